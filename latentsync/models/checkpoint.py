"""Strict loading and atomic saving of model weights in the official file format.

Official LatentSync files are ``{"state_dict": ..., "global_step": int}``; a bare state
dict is accepted too. Any missing, unexpected or mis-shaped key is an error unless the
caller names it as one of the two legitimate partial loads:

* ``new_modules``: key fragments the checkpoint may lack because the model adds them
  (a stage1 checkpoint loaded into a stage2 model lacks ``motion_modules.``);
* ``reshaped``: key fragments whose shape may differ and which keep their fresh
  initialisation (a Stable Diffusion UNet has 4 input channels and 768-wide text
  cross-attention where LatentSync has 13 channels and Whisper-width audio).

Whatever is skipped is logged, never silent.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Iterable, Mapping

import torch
from torch import nn

from latentsync.errors import CheckpointError
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)

_MAX_LISTED_KEYS = 10


def load_weights_file(path: str | os.PathLike, what: str = "checkpoint") -> object:
    """``torch.load`` of tensors and plain containers only (never arbitrary pickled objects).

    Whatever it cannot read (another kind of file, a truncated download, a pickle of objects) is a
    :class:`CheckpointError` naming the file; torch's own advice to retry without ``weights_only``
    (which would run code from the file) is not passed on.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path} (run `bash setup_env.sh` to download the official weights)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol ..." on files that are not checkpoints
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {what} {path}: not a PyTorch weights file, or a truncated or corrupt one "
            f"({type(exc).__name__}); download it again"
        ) from exc


def read_checkpoint(
    path: str | os.PathLike, containers: tuple[str, ...] = ("state_dict",)
) -> tuple[dict[str, torch.Tensor], int]:
    """Read a weights file; return ``(state_dict, global_step)`` (step 0 for a bare state dict).

    ``containers``: the keys a file may wrap its state dict in, first match wins (LatentSync
    files use ``state_dict``; VideoMAE-v2's use ``model`` or ``module``).
    """
    path = os.fspath(path)
    payload = load_weights_file(path)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, expected a dict of tensors")
    container = next((key for key in containers if key in payload), None)
    if container is not None:
        state_dict, step = payload[container], int(payload.get("global_step", 0))
    else:
        state_dict, step = payload, 0
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"checkpoint {path}: '{container}' holds a {type(state_dict).__name__}, expected a dict")
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path} has non-tensor entries: {_listing(bad)}")
    return dict(state_dict), step


def load_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "state dict",
    *,
    new_modules: Iterable[str] = (),
    reshaped: Iterable[str] = (),
) -> None:
    """Copy ``state_dict`` into ``model``, failing loudly on any mismatch not explicitly allowed."""
    new_modules, reshaped = tuple(new_modules), tuple(reshaped)
    expected = model.state_dict()

    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        key
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]

    allowed_missing = [key for key in missing if _matches(key, new_modules)]
    allowed_reshape = [key for key in mismatched if _matches(key, reshaped)]
    problems = []
    if len(allowed_missing) < len(missing):
        problems.append("missing keys: " + _listing([k for k in missing if k not in allowed_missing]))
    if unexpected:
        problems.append("unexpected keys: " + _listing(unexpected))
    if len(allowed_reshape) < len(mismatched):
        problems.append(
            "shape mismatches: "
            + _listing(
                [
                    f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
                    for k in mismatched
                    if k not in allowed_reshape
                ]
            )
        )
    if problems:
        raise CheckpointError(
            f"{source} does not match the model config ({'; '.join(problems)}); "
            "check that the config belongs to this checkpoint"
        )

    if allowed_missing:
        logger.info(
            "%s: %d tensors are new in this model and keep their initialisation (%s)",
            source, len(allowed_missing), ", ".join(new_modules),
        )
    if allowed_reshape:
        logger.info(
            "%s: %d tensors change shape and keep their initialisation: %s",
            source, len(allowed_reshape), _listing(allowed_reshape),
        )
    usable = {k: v for k, v in state_dict.items() if k not in allowed_reshape}
    model.load_state_dict(usable, strict=False)


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    new_modules: Iterable[str] = (),
    reshaped: Iterable[str] = (),
) -> int:
    """Load an official-format weights file into ``model`` strictly; return its ``global_step``."""
    state_dict, step = read_checkpoint(path)
    load_weights(model, state_dict, os.fspath(path), new_modules=new_modules, reshaped=reshaped)
    return step


def load_model_file(model: nn.Module, path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Load a weights file (a bare state dict, as the evaluation models ship) strictly; eval mode on ``device``."""
    state_dict, _ = read_checkpoint(path)
    load_weights(model, state_dict, os.fspath(path))
    return model.eval().to(device)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, global_step: int) -> None:
    """Write ``{"state_dict", "global_step"}`` atomically: a crash leaves the previous file intact."""
    state_dict = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    with atomic_output(path) as tmp:
        torch.save({"state_dict": state_dict, "global_step": int(global_step)}, tmp)


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel and torch.compile wrap the real module; save its keys, not the wrapper's.
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _matches(key: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in key for fragment in fragments)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f" and {more} more" if more > 0 else "")

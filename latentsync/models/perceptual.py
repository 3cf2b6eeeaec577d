"""LPIPS (VGG) for the U-Net's perceptual loss, built from the ``lpips`` package without network access.

The package ships its linear calibration layers but downloads the VGG16 trunk through
torchvision. Here the trunk comes from a local torchvision ``vgg16-397923af.pth`` (a config
path), or, only when a config explicitly allows it, stays randomly initialised (tests and
the CPU proof), which is logged loudly because such a loss is not LPIPS.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

import lpips
import torch

from latentsync.errors import CheckpointError
from latentsync.models.checkpoint import load_weights, load_weights_file, read_checkpoint

logger = logging.getLogger(__name__)

FETCH_HINT = "run `bash setup_env.sh --with-training` (it fetches checkpoints/auxiliary/)"

# lpips splits torchvision's ``vgg16().features`` into five slices, keeping the layer indices.
_SLICE_ENDS = (4, 9, 16, 23, 30)
_FEATURE_KEY = re.compile(r"features\.(\d+)\.(weight|bias)")


def torchvision_to_lpips_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``features.N.*`` of a torchvision VGG16 file to lpips' ``sliceK.N.*``; the classifier is dropped."""
    renamed = {}
    for key, value in state_dict.items():
        match = _FEATURE_KEY.fullmatch(key)
        if match is None:
            continue
        index = int(match.group(1))
        slice_number = next(i for i, end in enumerate(_SLICE_ENDS, start=1) if index < end)
        renamed[f"slice{slice_number}.{index}.{match.group(2)}"] = value
    return renamed


def load_lpips_vgg(
    vgg_weights_path: str | os.PathLike | None,
    *,
    allow_random_init: bool = False,
    device: torch.device | str = "cpu",
) -> lpips.LPIPS:
    """A frozen, eval-mode ``lpips.LPIPS(net="vgg")``; its trunk from ``vgg_weights_path`` (torchvision format)."""
    path = os.fspath(vgg_weights_path) if vgg_weights_path else ""
    present = bool(path) and os.path.isfile(path)
    if not present and (path or not allow_random_init):  # a path that is set must exist, random init or not
        raise CheckpointError(f"LPIPS VGG16 weights not found: {path or '(no path configured)'}; {FETCH_HINT}")
    model = _empty_lpips_vgg()
    if present:
        state_dict, _ = read_checkpoint(path)
        load_weights(model.net, torchvision_to_lpips_keys(state_dict), path)
    else:
        logger.warning(
            "!!! LPIPS: the VGG16 trunk is RANDOMLY INITIALISED (random-init backbones allowed by the config; "
            "weights file: %s). The perceptual loss is not LPIPS: use this only for tests and proofs. !!!",
            path or "none configured",
        )
        for layer in model.net.modules():
            if isinstance(layer, torch.nn.Conv2d):  # torchvision's VGG initialisation
                torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
    return model.eval().requires_grad_(False).to(device)


def _empty_lpips_vgg() -> lpips.LPIPS:
    """``lpips.LPIPS(net="vgg")`` with its calibration layers and input scaling, trunk weights uninitialised.

    Built on the meta device: torchvision's constructor would otherwise initialise (then drop)
    VGG16's 123M-parameter classifier, seconds of CPU time per build.
    """
    with warnings.catch_warnings():  # torchvision's notice about lpips' deprecated ``pretrained`` argument
        warnings.simplefilter("ignore", UserWarning)
        with torch.device("meta"):
            model = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    model.to_empty(device="cpu")
    fresh_scaling = lpips.ScalingLayer()
    model.scaling_layer.load_state_dict(fresh_scaling.state_dict())
    calibration = load_weights_file(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "vgg.pth"),
                                    "lpips calibration weights")
    # Keys ``linN.model.1.weight``; ``model.lins`` holds the same layers as ``N.model.1.weight``.
    load_weights(model.lins, {key.removeprefix("lin"): value for key, value in calibration.items()},
                 "lpips calibration weights (vgg.pth)")
    return model

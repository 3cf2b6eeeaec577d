"""Where a run starts, decided before anything is written: fresh in an empty output folder, or resuming.

A training command never writes over another run. ``ckpt.resume_ckpt_path: latest`` (the default of
every script) continues the newest checkpoint of the output folder, so rerunning a command resumes
it; the checks below refuse, with one line saying what to do instead:

* a new run (no checkpoint to resume: ``''``) in a folder that already holds a run's checkpoints or
  ``best_checkpoint.pt``, which its saves would overwrite, or a ``config.yaml`` that is not a run's;
* resuming from a checkpoint while later ones of the folder exist (or from another run's file into a
  folder holding a run): the later checkpoints would be overwritten;
* resuming a run whose saved config differs in a key that shapes the result (model, data, losses,
  optimiser, seed; keys marked ``changeable`` in the schema, such as the step budget, the checkpoint
  schedule or the device, may change) unless ``--allow_config_change``, which logs the differences.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from omegaconf import DictConfig

from latentsync.errors import CheckpointError, ConfigError, OutputError
from latentsync.training.checkpoints import BEST_CHECKPOINT, checkpoint_steps, parse_step, resolve_resume_path
from latentsync.training.config import Schema, flat_values
from latentsync.utils.files import check_writable_folder

logger = logging.getLogger(__name__)

_SHOWN_DIFFERENCES = 6


def start_checkpoint(config: DictConfig, schema: Schema, allow_config_change: bool = False) -> str | None:
    """The weights file the run resumes from (None: a new run), after the checks of the module docstring."""
    output_dir = config.data.train_output_dir
    check_writable_folder(output_dir, "--output_dir (data.train_output_dir)")
    steps = sorted(checkpoint_steps(output_dir))
    has_best = os.path.lexists(os.path.join(output_dir, BEST_CHECKPOINT))
    resume = resolve_resume_path(config.ckpt.resume_ckpt_path, output_dir)
    if resume is None:
        if steps or has_best:
            held = f"checkpoints up to step {steps[-1]}" if steps else BEST_CHECKPOINT
            raise OutputError(
                f"{output_dir} already holds a training run ({held}) that a new run would overwrite: resume it "
                "(ckpt.resume_ckpt_path=latest, the default) or choose another --output_dir"
            )
        config_copy = os.path.join(output_dir, "config.yaml")
        if os.path.lexists(config_copy) and not os.path.isdir(os.path.join(output_dir, "checkpoints")):
            raise OutputError(f"{config_copy} exists and is not a training run's (it has no checkpoints/ beside it): "
                              "choose another --output_dir")
        return None
    step = _step_of(resume)
    folder = os.path.join(output_dir, "checkpoints")
    inside = os.path.isdir(folder) and os.path.samefile(os.path.dirname(os.path.abspath(resume)), folder)
    later = [s for s in steps if s > step] if inside else steps  # another run's steps all count
    if later or (has_best and not inside):
        held = f"{'step' if len(later) == 1 else 'steps'} {', '.join(map(str, later))}" if later else BEST_CHECKPOINT
        raise OutputError(
            f"resuming {resume} (step {step}) would overwrite files of {output_dir} ({held}): resume the newest "
            "checkpoint (latest), move those files away, or choose another --output_dir"
        )
    _compare_configs(resume, step, config, schema, allow_config_change)
    return resume


def _step_of(weights_path: str) -> int:
    """The step of a weights file: from its name ``checkpoint-N.pt``, else from the file."""
    step = parse_step(weights_path)
    if step is not None:
        return step
    try:
        saved = torch.load(weights_path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read resume checkpoint {weights_path}: not a PyTorch weights file") from exc
    return int(saved.get("global_step", 0)) if isinstance(saved, dict) else 0


def _compare_configs(weights_path: str, step: int, config: DictConfig, schema: Schema, allow: bool) -> None:
    state_path = os.path.join(os.path.dirname(weights_path), f"state-{step}.pt")
    if not os.path.isfile(state_path):
        return  # a bare weights file: load_training_state says what it resumes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = torch.load(state_path, map_location="cpu", mmap=True, weights_only=False).get("config")
    except Exception as exc:
        raise CheckpointError(f"cannot read training state {state_path}: {exc}") from exc
    if not saved:
        return
    before, now = flat_values(saved, schema), flat_values(config, schema)
    changed = [key for key in schema if before.get(key) != now.get(key)]
    fixed = [key for key in changed if not schema[key].changeable]
    shown = ", ".join(f"{key} {before.get(key)!r} -> {now.get(key)!r}" for key in changed)
    if fixed and not allow:
        listing = ", ".join(f"{key} {before.get(key)!r} -> {now.get(key)!r}" for key in fixed[:_SHOWN_DIFFERENCES])
        more = f" and {len(fixed) - _SHOWN_DIFFERENCES} more" if len(fixed) > _SHOWN_DIFFERENCES else ""
        raise ConfigError(
            f"the run in {os.path.dirname(os.path.dirname(weights_path))} was trained with other settings ({listing}{more}): "
            "rerun with its settings, choose another --output_dir for a new run, or pass --allow_config_change to "
            "continue it with the new ones"
        )
    if changed:
        logger.log(logging.WARNING if fixed else logging.INFO, "resuming step %d with changed settings: %s", step, shown)

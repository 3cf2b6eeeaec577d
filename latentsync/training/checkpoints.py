"""Checkpoints of a training run: official weights files plus the full state that makes resume exact.

Every save writes, from rank 0 and each atomically (state first), ``checkpoints/checkpoint-N.pt``
(the official ``{"state_dict", "global_step"}`` weights) and ``checkpoints/state-N.pt``
(optimizer, LR schedule, grad scaler, the RNG states of every rank, history, best-checkpoint and
skip counters, config, and a digest tying it to its weights file). A crash mid-save leaves at
worst a state file without weights, which resume ignores.

accelerate's ``save_state`` is not used: it writes a folder of files in place (a crash leaves
a half-written folder), one RNG file per process, and a second copy of the weights.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import random
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from latentsync.config import to_container
from latentsync.errors import CheckpointError
from latentsync.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from latentsync.training.history import History
from latentsync.utils.files import atomic_output

if TYPE_CHECKING:
    from latentsync.training.run import TrainingRun

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best_checkpoint.pt"  # in the output folder, beside checkpoints/
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)\.pt")


# --------------------------------------------------------------------------- file names


def checkpoint_paths(output_dir: str, step: int) -> tuple[str, str]:
    """(weights file, training-state file) of ``step``."""
    folder = os.path.join(output_dir, "checkpoints")
    return os.path.join(folder, f"checkpoint-{step}.pt"), os.path.join(folder, f"state-{step}.pt")


def checkpoint_steps(output_dir: str) -> list[int]:
    """Steps that have a weights file in ``output_dir/checkpoints``."""
    found = glob.glob(os.path.join(glob.escape(output_dir), "checkpoints", "checkpoint-*.pt"))
    return [step for step in map(parse_step, found) if step is not None]


def parse_step(path: str | os.PathLike) -> int | None:
    """N of a weights file named ``checkpoint-N.pt`` (None for any other name)."""
    match = _CHECKPOINT_RE.fullmatch(os.path.basename(path))
    return int(match.group(1)) if match else None


def resolve_resume_path(value: str, output_dir: str) -> str | None:
    """The weights file to resume from: '' = none, 'latest' = newest in ``output_dir`` (none on a fresh run)."""
    if not value:
        return None
    if value == "latest":
        steps = checkpoint_steps(output_dir)
        return checkpoint_paths(output_dir, max(steps))[0] if steps else None
    if not os.path.isfile(value):
        raise CheckpointError(f"resume checkpoint not found: {value}")
    return value


def prune_checkpoints(output_dir: str, keep_last_n: int) -> None:
    """Delete all but the newest ``keep_last_n`` checkpoint pairs (0 keeps everything; the best copy is never touched)."""
    if keep_last_n <= 0:
        return
    for step in sorted(checkpoint_steps(output_dir))[:-keep_last_n]:
        for path in checkpoint_paths(output_dir, step):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


# --------------------------------------------------------------------------- save, load


def save_training_state(run: "TrainingRun") -> None:
    """Rank 0 writes the weights and the full training state atomically (state first); all ranks wait."""
    accelerator = run.accelerator
    rng_states = gather_objects(accelerator, rng_state())
    if accelerator.is_main_process:
        weights_path, state_path = checkpoint_paths(run.output_dir, run.global_step)
        model = accelerator.unwrap_model(run.model)
        state = {
            "global_step": run.global_step,
            "optimizer": run.optimizer.state_dict(),
            "lr_scheduler": run.lr_scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "rng_states": rng_states,
            "history": run.history.state_dict(),
            "best": run.best.state_dict() if run.best is not None else None,
            "nonfinite": run.guard.state_dict(),
            "config": to_container(run.config),
            "weights_digest": state_dict_digest(model.state_dict()),
        }
        with atomic_output(state_path) as tmp:
            torch.save(state, tmp)
        save_checkpoint(weights_path, model, run.global_step)
        run.note_write(state_path)
        run.note_write(weights_path)
        logger.info("saved %s", weights_path)
        prune_checkpoints(run.output_dir, run.settings.keep_last_n)
    accelerator.wait_for_everyone()


def save_best_checkpoint(run: "TrainingRun") -> str | None:
    """Rank 0 copies the current weights to ``best_checkpoint.pt`` (official format, atomic); its path there."""
    if not run.accelerator.is_main_process:
        return None
    path = os.path.join(run.output_dir, BEST_CHECKPOINT)
    save_checkpoint(path, run.accelerator.unwrap_model(run.model), run.global_step)
    run.note_write(path)
    return path


def load_training_state(run: "TrainingRun", weights_path: str) -> list[dict] | None:
    """Load weights, step, optimizer, LR schedule, scaler, history and counters; return the saved RNG states.

    Call before ``accelerator.prepare``. A bare weights file (no ``state-N.pt`` beside it)
    resumes weights and step only, with a warning.
    """
    state_dict, step = read_checkpoint(weights_path)
    load_weights(run.model, state_dict, weights_path)
    run.global_step = step
    state_path = os.path.join(os.path.dirname(weights_path), f"state-{step}.pt")
    if not os.path.isfile(state_path):
        logger.warning("no %s: resuming the weights and step %d with a fresh optimizer", state_path, step)
        return None
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any unpickling failure: report the file
        raise CheckpointError(f"cannot read training state {state_path}: {exc}") from exc
    if state.get("global_step") != step:
        raise CheckpointError(f"{state_path} is for step {state.get('global_step')}, but {weights_path} for {step}")
    if state.get("weights_digest") != state_dict_digest(state_dict):
        raise CheckpointError(
            f"{state_path} and {weights_path} come from different saves (one was overwritten or lost); "
            "resume from another step or pass a weights file without its state"
        )
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("lr_scheduler"):
        run.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state.get("scaler") and run.accelerator.scaler is not None:
        run.accelerator.scaler.load_state_dict(state["scaler"])
    run.history = History.from_state_dict(state["history"])
    if state.get("best") and run.best is not None:
        run.best.load_state_dict(state["best"])
    run.guard.load_state_dict(state.get("nonfinite") or {})
    logger.info("resumed from %s at step %d", weights_path, step)
    return state["rng_states"]


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> list[float]:
    """Per-tensor float64 sums: tells whether a training state and a weights file were saved together."""
    return [state_dict[k].detach().cpu().double().sum().item() for k in sorted(state_dict)]


# --------------------------------------------------------------------------- random generators


def rng_state() -> dict:
    """Every random generator this process may use."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_processes(accelerator: Accelerator, seed: int, step: int, saved: list[dict] | None) -> None:
    """Continue each rank's saved RNG streams, or start distinct ones (``seed + rank + step``) when there are none."""
    if saved is not None and len(saved) == accelerator.num_processes:
        set_rng_state(saved[accelerator.process_index])
        return
    if saved is not None:
        logger.warning("resumed with %d processes instead of %d: fresh RNG streams", accelerator.num_processes, len(saved))
    set_seed(seed + accelerator.process_index + step)


def gather_objects(accelerator: Accelerator, obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (a one-item list when not distributed)."""
    if accelerator.num_processes == 1:
        return [obj]
    gathered: list[Any] = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(gathered, obj)
    return gathered

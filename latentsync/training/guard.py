"""Skipping optimisation steps whose loss or gradient is not finite, and stopping when they keep coming."""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator

from latentsync.errors import TrainingDivergedError

logger = logging.getLogger(__name__)


def all_ranks_finite(accelerator: Accelerator, value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every process: every rank gets the same answer, so all skip together."""
    bad = (~torch.isfinite(value.detach())).any().float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return not bool(bad.item())


class NonFiniteGuard:
    """Counts skipped steps in a row; after ``max_in_a_row`` of them the run stops with a clear error."""

    def __init__(self, max_in_a_row: int = 10):
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0

    def step_done(self) -> None:
        self.in_a_row = 0

    def step_skipped(self, step: int, reason: str) -> None:
        """Log the skip of ``step``; raise TrainingDivergedError once ``max_in_a_row`` steps in a row were skipped."""
        self.in_a_row += 1
        self.total += 1
        logger.warning("step %d skipped: %s (%d in a row, %d in all)", step, reason, self.in_a_row, self.total)
        if self.max_in_a_row > 0 and self.in_a_row >= self.max_in_a_row:
            raise TrainingDivergedError(
                f"{self.in_a_row} steps in a row were skipped (step {step}: {reason}): the run diverged; "
                "resume from an earlier checkpoint with a lower optimizer.lr or without mixed precision "
                "(run.max_nonfinite_in_a_row sets this limit)"
            )

    def state_dict(self) -> dict:
        return {"in_a_row": self.in_a_row, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.in_a_row, self.total = state.get("in_a_row", 0), state.get("total", 0)

"""The state of one training run, built by a script and driven by :func:`latentsync.training.loop.train_loop`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from latentsync.errors import ConfigError
from latentsync.training.config import TOOLKIT_KEYS
from latentsync.training.guard import NonFiniteGuard
from latentsync.training.history import History


@dataclass(frozen=True)
class LoopSettings:
    """When to stop, validate, save and prune; how to clip; which validation metric picks the best checkpoint."""

    max_train_steps: int
    validation_steps: int
    save_ckpt_steps: int
    max_grad_norm: float | None = 1.0  # None or <= 0: no clipping (the norm is still checked)
    max_train_minutes: float = 0  # > 0: validate, save and stop once this much wall time has passed
    keep_last_n: int = 0  # checkpoint pairs kept (0: all)
    max_nonfinite_in_a_row: int = 10  # consecutive skipped steps that end the run
    best_metric: str | None = None  # a key of the validation metrics; None: no best checkpoint
    best_mode: str = "max"  # "max" or "min"

    @classmethod
    def from_config(cls, config: DictConfig, **overrides: Any) -> "LoopSettings":
        """From the keys both training configs share (see CONFIG_KEYS); ``overrides`` win over the config."""
        values = {}
        for name, key in CONFIG_KEYS.items():
            if name in overrides:
                continue
            spec = TOOLKIT_KEYS.get(key)
            default = spec.default if spec is not None and not spec.required else None
            values[name] = OmegaConf.select(config, key, default=default)
            if values[name] is None and name != "max_grad_norm":
                raise ConfigError(f"the training config lacks '{key}'")
        return cls(**values, **overrides)


# LoopSettings field -> config key (defaults: latentsync.training.config.TOOLKIT_KEYS).
CONFIG_KEYS = {
    "max_train_steps": "run.max_train_steps",
    "validation_steps": "run.validation_steps",
    "save_ckpt_steps": "ckpt.save_ckpt_steps",
    "max_grad_norm": "optimizer.max_grad_norm",
    "max_train_minutes": "run.max_train_minutes",
    "keep_last_n": "ckpt.keep_last_n",
    "max_nonfinite_in_a_row": "run.max_nonfinite_in_a_row",
}


@dataclass
class BestCheckpoint:
    """The best value of one validation metric so far, the step it was reached at, and validations since."""

    metric: str
    mode: str = "max"
    step: int | None = None
    value: float | None = None
    validations_since: int = 0

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {self.mode!r}")

    def update(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Record a validation; True when it beats every earlier one (a non-finite value never does)."""
        value = float(metrics[self.metric])
        better = math.isfinite(value) and (
            self.value is None or (value > self.value if self.mode == "max" else value < self.value)
        )
        if better:
            self.step, self.value, self.validations_since = step, value, 0
        else:
            self.validations_since += 1
        return better

    def state_dict(self) -> dict:
        return {"metric": self.metric, "mode": self.mode, "step": self.step, "value": self.value,
                "validations_since": self.validations_since}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("metric") == self.metric and state.get("mode") == self.mode:
            self.step, self.value = state["step"], state["value"]
            self.validations_since = state.get("validations_since", 0)


@dataclass
class TrainingRun:
    """Everything the loop needs, built once by the script (model and optimizer already prepared)."""

    config: DictConfig
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    output_dir: str
    settings: LoopSettings
    train_loader: DataLoader | None = None
    global_step: int = 0
    history: History = field(default_factory=History)
    best: BestCheckpoint | None = None
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard)
    debug: Any = None  # a DebugRecorder when asked for

    def __post_init__(self):
        if self.best is None and self.settings.best_metric:
            self.best = BestCheckpoint(self.settings.best_metric, self.settings.best_mode)
        self.guard.max_in_a_row = self.settings.max_nonfinite_in_a_row

    def note_write(self, path: str | os.PathLike) -> None:
        if self.debug is not None:
            self.debug.note_write(path)

"""A toy training run for the toolkit tests: a small MLP with dropout on seeded random regression data."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import OmegaConf
from torch import nn

from latentsync.training.checkpoints import load_training_state, resolve_resume_path, seed_processes
from latentsync.training.run import LoopSettings, TrainingRun
from latentsync.training.setup import build_lr_scheduler, build_optimizer, build_train_loader
from tests.conftest import reset_accelerate_state


class ToyData(torch.utils.data.Dataset):
    """Sample ``(epoch, i)``: x (4,), y (1,) = a fixed linear map of x plus noise; a pure function of the key."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key):
        epoch, index = key
        g = torch.Generator().manual_seed(1000 * epoch + index)
        x = torch.randn(4, generator=g)
        return {"x": x, "y": x.sum(0, keepdim=True) + 0.1 * torch.randn(1, generator=g), "video_index": torch.tensor(index)}


def toy_loss(run, batch):
    """MSE through dropout (so resume must restore the RNG exactly)."""
    return nn.functional.mse_loss(run.model(batch["x"]), batch["y"])


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate_state()


def toy_run(
    output_dir, max_steps: int = 6, resume: str = "", accumulation: int = 1, schedule_steps: int = 6, **settings
) -> TrainingRun:
    """Build a run the way a training script does: seed, model, optimizer, schedule, resume, prepare, data, RNG."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    set_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = build_optimizer(model.parameters(), lr=1e-2)
    scheduler = build_lr_scheduler("cosine", optimizer, warmup_steps=2, total_steps=schedule_steps)
    options = dict(max_train_steps=max_steps, validation_steps=2, save_ckpt_steps=3, max_grad_norm=1.0)
    options.update(settings)
    run = TrainingRun(OmegaConf.create({"toy": True}), accelerator, model, optimizer, scheduler, str(output_dir),
                      LoopSettings(**options))
    path = resolve_resume_path(resume, str(output_dir))
    saved = load_training_state(run, path) if path else None
    run.model, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    run.train_loader = build_train_loader(ToyData(), accelerator, batch_size=4, seed=0, start_step=run.global_step)
    seed_processes(accelerator, 0, run.global_step, saved)
    return run

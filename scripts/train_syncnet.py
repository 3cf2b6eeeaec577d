"""Train StableSyncNet to tell in-sync (mouth, speech) pairs from shifted ones.

    torchrun --nproc_per_node 2 -m scripts.train_syncnet --config_path configs/syncnet/syncnet_16_pixel_attn.yaml \
        [--output_dir DIR] [--resume_ckpt_path latest|PATH] [key=value ...]

Parse -> config -> build -> loop. The loop, distribution (accelerate: DDP over NCCL on GPUs,
gloo on CPUs), gradient accumulation, mixed precision, non-finite-step skips, validation
schedule, charts and checkpoints come from :mod:`latentsync.training`. Every
``ckpt.save_ckpt_steps`` steps rank 0 writes, atomically, ``checkpoints/checkpoint-N.pt``
(the official ``{"state_dict", "global_step"}`` weights) and ``checkpoints/state-N.pt``
(optimizer, LR schedule, grad scaler, RNG of every rank, history, config), which together let
``--resume_ckpt_path`` continue exactly where a run stopped; ``best_checkpoint.pt`` holds the
weights with the best validation accuracy so far.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from latentsync.data.syncnet_dataset import SyncNetDataset
from latentsync.data.video_dataset import validation_keys
from latentsync.losses import cosine_loss
from latentsync.metrics.syncnet_accuracy import SyncScore, evaluate
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.syncnet_input import load_frozen_vae, syncnet_embeddings
from latentsync.training.checkpoints import load_training_state, resolve_resume_path, seed_processes
from latentsync.training.config import load_training_config as load_config_with_overrides
from latentsync.training.cli import flag_overrides, run_training_main, training_parser
from latentsync.training.loop import DebugRecorder
from latentsync.training.run import LoopSettings, TrainingRun
from latentsync.training.setup import (
    build_accelerator,
    build_lr_scheduler,
    build_optimizer,
    build_train_loader,
    build_val_loader,
)
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "configs/syncnet/syncnet_16_pixel_attn.yaml"
REQUIRED_KEYS = (
    "model.audio_encoder", "model.visual_encoder",
    "ckpt.save_ckpt_steps",
    "data.train_output_dir", "data.batch_size", "data.num_frames", "data.resolution", "data.num_val_samples",
    "optimizer.lr", "run.max_train_steps", "run.validation_steps", "run.seed",
)
# Keys a config may leave out (with their defaults); any other override must name an existing key.
OPTIONAL_KEYS = {
    "data.min_negative_offset": 1,
    "data.frame_cache_size": 0,
    "data.audio_config": "configs/audio.yaml",
    "data.vae_path": "checkpoints/sd-vae-ft-mse",
    "data.num_workers": 0,
    "data.gradient_accumulation_steps": 1,
    "optimizer.max_grad_norm": 1.0,
    "optimizer.weight_decay": 1e-2,
    "optimizer.lr_scheduler": "constant",
    "optimizer.lr_warmup_steps": 0,
    "ckpt.resume_ckpt_path": "",
    "ckpt.keep_last_n": 0,
    "run.mixed_precision_training": False,
    "run.device": "auto",
    "run.max_train_minutes": 0,
    "run.max_nonfinite_in_a_row": 10,
}


# --------------------------------------------------------------------------- parse, config


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return training_parser("Train StableSyncNet (launch with torchrun for several processes)", DEFAULT_CONFIG).parse_args(argv)


def load_training_config(args: argparse.Namespace) -> DictConfig:
    """The YAML config with defaults for optional keys and the CLI overrides applied; read-only."""
    return load_config_with_overrides(args.config_path, REQUIRED_KEYS, OPTIONAL_KEYS, flag_overrides(args))


# --------------------------------------------------------------------------- build


@dataclass
class SyncNetRun(TrainingRun):
    """A training run plus what SyncNet validation needs."""

    val_loader: DataLoader | None = None
    vae: torch.nn.Module | None = None


def build(config: DictConfig, debug_dump_dir: str | None = None) -> SyncNetRun:
    """Accelerator, model, optimizer (with the resumed state, if any), data and output folders."""
    data = config.data
    accelerator = build_accelerator(config.run.device, config.run.mixed_precision_training, data.gradient_accumulation_steps)
    set_seed(config.run.seed)  # same initial weights on every rank
    model = StableSyncNet(config.model).to(accelerator.device)
    optimizer = build_optimizer(
        [p for p in model.parameters() if p.requires_grad], config.optimizer.lr, config.optimizer.weight_decay
    )
    lr_scheduler = build_lr_scheduler(
        config.optimizer.lr_scheduler, optimizer, config.optimizer.lr_warmup_steps, config.run.max_train_steps
    )
    settings = LoopSettings.from_config(config, best_metric="accuracy", best_mode="max")
    run = SyncNetRun(config, accelerator, model, optimizer, lr_scheduler, data.train_output_dir, settings)
    resume = resolve_resume_path(config.ckpt.resume_ckpt_path, run.output_dir)
    rng_states = load_training_state(run, resume) if resume else None

    run.model, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    train_set = SyncNetDataset.from_config(data, "train", seed=config.run.seed)
    val_set = SyncNetDataset.from_config(data, "val", seed=config.run.seed + 1)
    run.train_loader = build_train_loader(
        train_set, accelerator, data.batch_size, config.run.seed, run.global_step, data.num_workers
    )
    keys = validation_keys(len(val_set), data.num_val_samples)
    run.val_loader = build_val_loader(val_set, keys, accelerator, data.batch_size, data.num_workers)
    if data.latent_space:
        run.vae = load_frozen_vae(data.vae_path, accelerator.device)
    if accelerator.is_main_process:
        os.makedirs(os.path.join(run.output_dir, "checkpoints"), exist_ok=True)
        with atomic_output(os.path.join(run.output_dir, "config.yaml")) as tmp:
            OmegaConf.save(config, tmp)
    seed_processes(accelerator, config.run.seed, run.global_step, rng_states)
    if debug_dump_dir:
        run.debug = DebugRecorder(accelerator, debug_dump_dir)
    return run


# --------------------------------------------------------------------------- loss, validation


def sync_loss(run: SyncNetRun, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean BCE of the cosine similarity against the in-sync label."""
    device = run.accelerator.device
    vision, audio = syncnet_embeddings(run.model, batch, run.vae, run.config.data.lower_half, device)
    return cosine_loss(vision, audio, batch["y"].to(device)).mean()


def validate(run: SyncNetRun) -> dict[str, float]:
    """Loss and accuracy on the fixed validation draws (sharded over ranks, summed)."""
    accelerator = run.accelerator
    model = accelerator.unwrap_model(run.model)
    model.eval()
    with accelerator.autocast():
        local = evaluate(model, run.val_loader, run.vae, run.config.data.lower_half, accelerator.device, progress=False)
    model.train()
    totals = accelerator.reduce(torch.tensor(local.as_list(), dtype=torch.float64, device=accelerator.device), "sum")
    score = SyncScore.from_list(totals.tolist())
    return {"loss": score.loss, "accuracy": score.accuracy}


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    return run_training_main(argv, parse_args, load_training_config, build, sync_loss, validate)


if __name__ == "__main__":
    sys.exit(main())

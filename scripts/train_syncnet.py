"""Train StableSyncNet to tell in-sync (mouth, speech) pairs from shifted ones.

    torchrun --nproc_per_node 2 -m scripts.train_syncnet --config_path configs/syncnet/syncnet_16_pixel_attn.yaml \
        [--output_dir DIR] [--resume_ckpt_path latest|PATH] [key=value ...]

Parse -> config -> build -> loop. The loop, distribution (accelerate: DDP over NCCL on GPUs,
gloo on CPUs), gradient accumulation, mixed precision, non-finite-step skips, validation
schedule, charts and checkpoints come from :mod:`latentsync.training`. Every
``ckpt.save_ckpt_steps`` steps rank 0 writes, atomically, ``checkpoints/checkpoint-N.pt``
(the official ``{"state_dict", "global_step"}`` weights) and ``checkpoints/state-N.pt``
(optimizer, LR schedule, grad scaler, RNG of every rank, history, config), which together let
a rerun of the same command (``ckpt.resume_ckpt_path: latest``) continue exactly where it stopped;
``best_checkpoint.pt`` holds the weights with the best validation accuracy so far.
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
from latentsync.paths import CONFIGS_DIR
from latentsync.training.checkpoints import load_training_state, seed_processes
from latentsync.training.cli import config_from_args, parse_training_args, run_training_main, training_parser
from latentsync.training.config import TOOLKIT_KEYS, Key
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

DEFAULT_CONFIG = str(CONFIGS_DIR / "syncnet" / "syncnet_16_pixel_attn.yaml")
ENCODER_KEYS = {  # model.audio_encoder / model.visual_encoder (see latentsync.models.stable_syncnet.EncoderConfig)
    "in_channels": Key("int", low=1),
    "block_out_channels": Key("list"),
    "downsample_factors": Key("list"),
    "attn_blocks": Key("list", None, nullable=True),
    "dropout": Key("float", 0.0, low=0, high=1),
}
SCHEMA = {
    **TOOLKIT_KEYS,
    **{f"model.{encoder}.{name}": key for encoder in ("audio_encoder", "visual_encoder") for name, key in ENCODER_KEYS.items()},
    "ckpt.inference_ckpt_path": Key("path", ""),  # the weights that inference, stage 2 and evaluation use
    "data.num_val_samples": Key("int", low=1),
    "data.lower_half": Key("bool"),
    "data.latent_space": Key("bool"),
    "data.min_negative_offset": Key("int", 1, low=1),
    "run.max_train_steps": Key("int", low=1, changeable=True),
    "run.validation_steps": Key("int", low=1, changeable=True),
}


# --------------------------------------------------------------------------- parse, config


def parser() -> argparse.ArgumentParser:
    return training_parser("Train StableSyncNet (launch with torchrun for several processes)", DEFAULT_CONFIG)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_training_args(parser(), argv)


def load_training_config(args: argparse.Namespace) -> DictConfig:
    """The checked YAML config with defaults for optional keys and the CLI overrides applied; read-only."""
    return config_from_args(args, SCHEMA)


# --------------------------------------------------------------------------- build


@dataclass
class SyncNetRun(TrainingRun):
    """A training run plus what SyncNet validation needs."""

    val_loader: DataLoader | None = None
    vae: torch.nn.Module | None = None


def build(config: DictConfig, debug_dump_dir: str | None = None, resume: str | None = None) -> SyncNetRun:
    """Accelerator, model, optimizer (with the state of ``resume``, a weights file, if given), data and output folders."""
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
    return run_training_main(argv, parser(), SCHEMA, build, sync_loss, validate)


if __name__ == "__main__":
    sys.exit(main())

"""Train StableSyncNet to tell in-sync (mouth, speech) pairs from shifted ones.

    torchrun --nproc_per_node 2 -m scripts.train_syncnet --config_path configs/syncnet/syncnet_16_pixel_attn.yaml \
        [--output_dir DIR] [--resume_ckpt_path latest|PATH] [key=value ...]

Parse -> config -> build -> loop -> validate/checkpoint. Distribution, gradient accumulation and
mixed precision come from ``accelerate`` (DDP over NCCL on GPUs, gloo on CPUs). Every
``ckpt.save_ckpt_steps`` steps rank 0 writes, atomically, ``checkpoints/checkpoint-N.pt``
(the official ``{"state_dict", "global_step"}`` weights) and ``checkpoints/state-N.pt``
(optimizer, grad scaler, RNG of every rank, loss history, config), which together let
``--resume_ckpt_path`` continue exactly where a run stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from eval.eval_syncnet_acc import SyncScore, evaluate, forward_pair, load_vae, validation_keys
from latentsync.config import load_config, to_container
from latentsync.data.syncnet_dataset import ShardedEpochSampler, SyncNetDataset
from latentsync.errors import CheckpointError, ConfigError, LatentSyncError
from latentsync.losses import cosine_loss
from latentsync.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.utils.atomic import atomic_output
from latentsync.utils.logging import configure_logging
from latentsync.utils.plotting import save_loss_chart

logger = get_logger(__name__)

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
}
DEBUG_DUMP_ENV = "LATENTSYNC_DEBUG_DUMP_DIR"
_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)\.pt$")


# --------------------------------------------------------------------------- parse, config


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train StableSyncNet (launch with torchrun for several processes)")
    parser.add_argument("--config_path", default=DEFAULT_CONFIG)
    parser.add_argument("--output_dir", help="overrides data.train_output_dir")
    parser.add_argument("--resume_ckpt_path", help="overrides ckpt.resume_ckpt_path; 'latest' = newest in output_dir")
    parser.add_argument(
        "--debug_dump_dir", default=os.environ.get(DEBUG_DUMP_ENV),
        help=f"each rank writes rank<R>.json (data seen, weight digests, files written); also ${DEBUG_DUMP_ENV}",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.max_train_steps=100")
    return parser.parse_args(argv)


def load_training_config(args: argparse.Namespace) -> DictConfig:
    """The YAML config with defaults for optional keys and the CLI overrides applied; read-only."""
    base = load_config(args.config_path, required=REQUIRED_KEYS)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"data.train_output_dir={args.output_dir}")
    if args.resume_ckpt_path:
        overrides.append(f"ckpt.resume_ckpt_path={args.resume_ckpt_path}")
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or (OmegaConf.select(base, key, default=None) is None and key not in OPTIONAL_KEYS):
            raise ConfigError(f"bad override '{item}': expected key=value with a key of {args.config_path}")
    defaults = OmegaConf.create({})
    for key, value in OPTIONAL_KEYS.items():
        OmegaConf.update(defaults, key, value)
    config = OmegaConf.merge(defaults, to_container(base), OmegaConf.from_dotlist(overrides))
    OmegaConf.set_readonly(config, True)
    return config


# --------------------------------------------------------------------------- build


@dataclass
class History:
    """Loss curves kept for charts and saved with the training state."""

    train: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    val: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, accuracy)


@dataclass
class Run:
    """Everything the loop needs, built once."""

    config: DictConfig
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DataLoader
    val_loader: DataLoader
    vae: torch.nn.Module | None
    output_dir: str
    global_step: int = 0
    history: History = field(default_factory=History)
    debug: dict[str, Any] | None = None


def mixed_precision_mode(enabled: bool, device: torch.device) -> str:
    """accelerate's precision: bf16 (or fp16 on older GPUs) on CUDA when enabled, fp32 everywhere else."""
    if not enabled or device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def build_accelerator(config: DictConfig) -> Accelerator:
    if config.run.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"run.device must be auto, cpu or cuda, got {config.run.device!r}")
    use_cpu = config.run.device == "cpu" or not torch.cuda.is_available()
    precision = mixed_precision_mode(config.run.mixed_precision_training, torch.device("cpu" if use_cpu else "cuda"))
    return Accelerator(
        cpu=use_cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=config.data.gradient_accumulation_steps,
    )


def build_loaders(config: DictConfig, accelerator: Accelerator, start_step: int) -> tuple[DataLoader, DataLoader]:
    """Endless sharded training batches (resumed after ``start_step`` optimiser steps) and this rank's validation share."""
    data = config.data
    train_set = SyncNetDataset.from_config(data, "train", seed=config.run.seed)
    val_set = SyncNetDataset.from_config(data, "val", seed=config.run.seed + 1)
    consumed = start_step * data.gradient_accumulation_steps * data.batch_size
    sampler = ShardedEpochSampler(
        len(train_set), accelerator.process_index, accelerator.num_processes, config.run.seed, start=consumed
    )
    loader_options = dict(
        num_workers=data.num_workers,
        persistent_workers=data.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
    )
    train_loader = DataLoader(train_set, batch_size=data.batch_size, sampler=sampler, drop_last=True, **loader_options)
    keys = validation_keys(len(val_set), data.num_val_samples)[accelerator.process_index :: accelerator.num_processes]
    val_loader = DataLoader(val_set, batch_size=data.batch_size, sampler=keys, **loader_options)
    return train_loader, val_loader


def build(config: DictConfig, debug_dump_dir: str | None = None) -> Run:
    """Accelerator, model, optimizer (with the resumed state, if any), data and output folders."""
    accelerator = build_accelerator(config)
    set_seed(config.run.seed)  # same initial weights on every rank
    model = StableSyncNet(config.model).to(accelerator.device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        fused=True,  # one kernel for all tensors: ~8x faster steps than the per-tensor default on a CPU
    )
    # Stepped once per optimiser step (not prepared by accelerate, which would step it once per process).
    lr_scheduler = get_scheduler(
        config.optimizer.lr_scheduler, optimizer,
        num_warmup_steps=config.optimizer.lr_warmup_steps, num_training_steps=config.run.max_train_steps,
    )
    output_dir = config.data.train_output_dir
    run = Run(config, accelerator, model, optimizer, lr_scheduler, None, None, None, output_dir)
    resume = resolve_resume_path(config.ckpt.resume_ckpt_path, output_dir)
    rng_states = load_training_state(run, resume) if resume else None

    run.model, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    run.train_loader, run.val_loader = build_loaders(config, accelerator, run.global_step)
    if config.data.latent_space:
        run.vae = load_vae(config.data.vae_path, accelerator.device)
    if accelerator.is_main_process:
        os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
        with atomic_output(os.path.join(output_dir, "config.yaml")) as tmp:
            OmegaConf.save(config, tmp)
    if rng_states is not None and len(rng_states) == accelerator.num_processes:
        set_rng_state(rng_states[accelerator.process_index])
    else:
        if rng_states is not None:
            logger.warning("resumed with %d processes instead of %d: fresh RNG streams", accelerator.num_processes, len(rng_states))
        set_seed(config.run.seed + accelerator.process_index + run.global_step)
    if debug_dump_dir:
        run.debug = {"rank": accelerator.process_index, "world_size": accelerator.num_processes,
                     "steps": [], "files_written": [], "dump_dir": debug_dump_dir}
    return run


# --------------------------------------------------------------------------- loop


def train(run: Run) -> None:
    """Optimise until ``run.max_train_steps``, validating and checkpointing on schedule."""
    config, accelerator = run.config, run.accelerator
    max_steps = config.run.max_train_steps
    data = config.data
    logger.info(
        "training from step %d to %d: %d processes x batch %d x %d accumulation; precision %s; device %s",
        run.global_step, max_steps, accelerator.num_processes, data.batch_size, data.gradient_accumulation_steps,
        accelerator.mixed_precision, accelerator.device, main_process_only=True,
    )
    progress = tqdm(total=max_steps, initial=run.global_step, desc="Steps", disable=not accelerator.is_main_process)
    deadline = time.monotonic() + 60 * config.run.max_train_minutes if config.run.max_train_minutes > 0 else None
    run.model.train()
    micro_losses: list[torch.Tensor] = []
    seen: list[int] = []
    if run.global_step >= max_steps:
        logger.info("already at step %d of %d: nothing to train", run.global_step, max_steps)
        progress.close()
        return
    for batch in run.train_loader:
        with accelerator.accumulate(run.model):
            vision, audio = forward_pair(run.model, batch, run.vae, data.lower_half, accelerator.device)
            loss = cosine_loss(vision, audio, batch["y"].to(accelerator.device)).mean()
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(run.model.parameters(), config.optimizer.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        micro_losses.append(loss.detach())
        seen += batch["video_index"].tolist()
        if not accelerator.sync_gradients:
            continue

        run.lr_scheduler.step()
        run.global_step += 1
        step_loss = accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean").item()
        micro_losses.clear()
        run.history.train.append((run.global_step, step_loss))
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}")
        if run.debug is not None:
            run.debug["steps"].append({"step": run.global_step, "loss": step_loss, "video_indices": seen,
                                       "weights_digest": weights_digest(run.model)})
        seen = []
        last = run.global_step == max_steps or out_of_time(accelerator, deadline)
        if last and run.global_step < max_steps:
            logger.info("run.max_train_minutes reached at step %d: stopping", run.global_step)
        if run.global_step % config.run.validation_steps == 0 or last:
            validate(run)
        if run.global_step % config.ckpt.save_ckpt_steps == 0 or last:
            save_training_state(run)
        if last:
            break
    progress.close()


def out_of_time(accelerator: Accelerator, deadline: float | None) -> bool:
    """Whether rank 0's clock passed ``deadline``; every rank gets the same answer, so they stop together."""
    if deadline is None:
        return False
    flag = torch.tensor([float(time.monotonic() > deadline)], device=accelerator.device)
    if accelerator.num_processes > 1:
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def validate(run: Run) -> SyncScore:
    """Loss and accuracy on the fixed validation draws (sharded over ranks, summed), logged and charted."""
    accelerator = run.accelerator
    model = accelerator.unwrap_model(run.model)
    model.eval()
    with accelerator.autocast():
        local = evaluate(model, run.val_loader, run.vae, run.config.data.lower_half, accelerator.device, progress=False)
    model.train()
    totals = accelerator.reduce(torch.tensor(local.as_list(), dtype=torch.float64, device=accelerator.device), "sum")
    score = SyncScore.from_list(totals.tolist())
    run.history.val.append((run.global_step, score.loss, score.accuracy))
    logger.info("step %d: val loss %.4f, val accuracy %.3f (%d pairs)", run.global_step, score.loss,
                score.accuracy, score.count, main_process_only=True)
    if accelerator.is_main_process:
        path = os.path.join(run.output_dir, "loss_charts", "loss_chart.png")
        train_steps, train_losses = zip(*run.history.train) if run.history.train else ((), ())
        val_steps, val_losses, val_acc = zip(*run.history.val)
        save_loss_chart(path, (train_steps, train_losses), (val_steps, val_losses), (val_steps, val_acc),
                        title=os.path.basename(os.path.normpath(run.output_dir)))
        _record_write(run, path)
    return score


# --------------------------------------------------------------------------- checkpoints


def checkpoint_paths(output_dir: str, step: int) -> tuple[str, str]:
    """(weights file, training-state file) of ``step``."""
    folder = os.path.join(output_dir, "checkpoints")
    return os.path.join(folder, f"checkpoint-{step}.pt"), os.path.join(folder, f"state-{step}.pt")


def save_training_state(run: Run) -> None:
    """Rank 0 writes the weights and the full training state atomically (state first); all ranks wait."""
    accelerator = run.accelerator
    rng_states = gather_objects(accelerator, rng_state())
    if accelerator.is_main_process:
        weights_path, state_path = checkpoint_paths(run.output_dir, run.global_step)
        state = {
            "global_step": run.global_step,
            "optimizer": run.optimizer.state_dict(),
            "lr_scheduler": run.lr_scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "rng_states": rng_states,
            "history": {"train": run.history.train, "val": run.history.val},
            "config": to_container(run.config),
            "weights_digest": state_dict_digest(accelerator.unwrap_model(run.model).state_dict()),
        }
        with atomic_output(state_path) as tmp:
            torch.save(state, tmp)
        save_checkpoint(weights_path, accelerator.unwrap_model(run.model), run.global_step)
        _record_write(run, state_path)
        _record_write(run, weights_path)
        logger.info("saved %s", weights_path)
        prune_checkpoints(run.output_dir, run.config.ckpt.keep_last_n)
    accelerator.wait_for_everyone()


def prune_checkpoints(output_dir: str, keep_last_n: int) -> None:
    """Delete all but the newest ``keep_last_n`` checkpoint pairs (0 keeps everything)."""
    if keep_last_n <= 0:
        return
    for step in sorted(_checkpoint_steps(output_dir))[:-keep_last_n]:
        for path in checkpoint_paths(output_dir, step):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _checkpoint_steps(output_dir: str) -> list[int]:
    found = glob.glob(os.path.join(glob.escape(output_dir), "checkpoints", "checkpoint-*.pt"))
    return [int(m.group(1)) for m in (_CHECKPOINT_RE.search(p) for p in found) if m]


def resolve_resume_path(value: str, output_dir: str) -> str | None:
    """The weights file to resume from: '' = none, 'latest' = newest in ``output_dir`` (none on a fresh run)."""
    if not value:
        return None
    if value == "latest":
        steps = _checkpoint_steps(output_dir)
        return checkpoint_paths(output_dir, max(steps))[0] if steps else None
    if not os.path.isfile(value):
        raise CheckpointError(f"resume checkpoint not found: {value}")
    return value


def load_training_state(run: Run, weights_path: str) -> list[dict] | None:
    """Load weights, step, optimizer, scaler and history from a checkpoint pair; return the saved RNG states.

    A bare weights file (no ``state-N.pt`` beside it) resumes weights and step only, with a warning.
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
    run.history = History([tuple(x) for x in state["history"]["train"]], [tuple(x) for x in state["history"]["val"]])
    logger.info("resumed from %s at step %d", weights_path, step)
    return state["rng_states"]


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


def gather_objects(accelerator: Accelerator, obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (a one-item list when not distributed)."""
    if accelerator.num_processes == 1:
        return [obj]
    gathered: list[Any] = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


# --------------------------------------------------------------------------- debugging aids


def weights_digest(model: torch.nn.Module) -> list[float]:
    """A few numbers that differ when weights differ: per-tensor sums of the first and last parameters plus the total."""
    params = [p.detach().double() for p in model.parameters()]
    return [params[0].sum().item(), params[-1].sum().item(), sum(p.abs().sum() for p in params).item()]


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> list[float]:
    """Per-tensor float64 sums: tells whether a training state and a weights file were saved together."""
    return [state_dict[k].detach().cpu().double().sum().item() for k in sorted(state_dict)]


def _record_write(run: Run, path: str) -> None:
    if run.debug is not None:
        run.debug["files_written"].append(os.path.abspath(path))


def write_debug_dump(run: Run) -> None:
    """``rank<R>.json`` in the debug folder: what this rank saw and wrote."""
    if run.debug is None:
        return
    folder = run.debug["dump_dir"]
    os.makedirs(folder, exist_ok=True)
    with atomic_output(os.path.join(folder, f"rank{run.debug['rank']}.json")) as tmp, open(tmp, "w") as f:
        json.dump({k: v for k, v in run.debug.items() if k != "dump_dir"}, f)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    try:
        config = load_training_config(args)
        run = build(config, args.debug_dump_dir)
        train(run)
        write_debug_dump(run)
        run.accelerator.end_training()
    except LatentSyncError as err:
        logging.getLogger(__name__).error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

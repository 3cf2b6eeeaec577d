"""Training parts of ``tools/gpu_check.py``: step time and memory per config and option, and the training CLI.

``training``: ``tools/benchmark_unet_training.py`` (one process per config) with the frozen networks
read from files in their official formats (SD VAE, StableSyncNet, LPIPS' VGG16, VideoMAE-v2 ViT-g):
two optimiser steps per memory option, the loss finite, the weights changed, the peak memory and
which cards it fits. ``train_cli``: ``python -m scripts.train_unet`` for two steps on synthetic clips,
a checkpoint saved at step 2, then the same command resumed from it for a third step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from tools.gpu_check_inference import TIMED_OUT, failure, fresh_folder, run_child, run_step, seconds_left

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_CONFIGS = ("stage1", "stage2", "stage2_512", "stage2_efficient")
TINY_CONFIGS = ("stage1_tiny_cpu", "stage2_tiny_cpu")
CARDS_GIB = (24, 40, 80)
CUDA_CONTEXT_GIB = 0.75  # what the CUDA context and libraries take besides PyTorch's reserved memory (about)
TRAINABLE = ("motion_modules.", "attentions.")  # what the stage-2 configs train


def fits(peak_reserved_gib: float) -> dict[int, bool]:
    """Which card sizes hold the peak (PyTorch's reserved memory plus the CUDA context)."""
    return {card: peak_reserved_gib + CUDA_CONTEXT_GIB <= card for card in CARDS_GIB}


def mode_row(mode: dict) -> tuple[str, str, dict]:
    if "skipped" in mode:
        return "skipped", mode["skipped"], {}
    steps = mode["step_seconds"]
    if not steps:
        return "failed", mode.get("error", "no step ran"), {}
    values = {k: mode[k] for k in ("step_seconds", "losses", "finite", "weights_changed", "skipped_steps") if k in mode}
    text = f"{steps[-1]:.3f} s/step (step 1: {steps[0]:.3f} s), {mode['precision']}"
    if "peak_reserved_gib" in mode:
        cards = fits(mode["peak_reserved_gib"])
        values.update(peak_reserved_gib=mode["peak_reserved_gib"], peak_allocated_gib=mode["peak_allocated_gib"],
                      fits_gib=[card for card, ok in cards.items() if ok])
        text += (f", peak {mode['peak_allocated_gib']:.1f} GiB allocated / {mode['peak_reserved_gib']:.1f} GiB reserved; "
                 + ", ".join(f"{'fits' if ok else 'too big for'} {card} GB" for card, ok in cards.items()))
    else:
        values["peak_rss_gib"] = mode["peak_rss_gib"]
        text += f", peak RSS {mode['peak_rss_gib']:.2f} GiB"
    text += (f"; losses {', '.join(f'{v:.4g}' for v in mode['losses'])} (finite: {mode['finite']}), "
             f"weights changed: {mode['weights_changed']}, grad-scaler skipped steps: {mode['skipped_steps']}")
    healthy = mode["finite"] and mode["weights_changed"] and "error" not in mode
    if "error" in mode:
        text += f"; {mode['error']}"
    return ("ok" if healthy else "failed"), text, values


def training_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    """Part 4: step time and memory of each config, with and without gradient checkpointing and 8-bit Adam."""
    work = fresh_folder(ctx, "training")
    configs = TINY_CONFIGS if ctx.tiny else REAL_CONFIGS
    modes = ["ckpt", "plain", "ckpt+8bit"]
    files = [] if ctx.tiny else ["--vae_path", ctx.made["vae"], "--syncnet_path", ctx.made["syncnet"],
                                  "--vgg_path", ctx.made["vgg"], "--videomae_path", ctx.made["videomae"]]
    for name in configs:
        result = work / f"{name}.json"
        args = ["-m", "tools.benchmark_unet_training", "--config", str(PROJECT_ROOT / "configs/unet" / f"{name}.yaml"),
                "--steps", "2", "--modes", *modes, "--device", ctx.device, "--json", str(result), *files]
        if seconds_left(ctx) < 5:
            emit(name, "the part's time limit was reached", status="skipped")
            continue
        code, wall, stderr = run_child(args, work / f"{name}.log", timeout=seconds_left(ctx))
        # The benchmark writes its JSON after each mode: what finished is reported even after a failure.
        reports = json.loads(result.read_text())["configs"] if result.is_file() else []
        for report in reports:
            emit(name, f"{report['parameters'] / 1e6:.0f}M UNet parameters, {report['trainable'] / 1e6:.0f}M trained, "
                 f"batch {report['batch_size']}; process {wall:.0f} s", parameters=report["parameters"],
                 trainable=report["trainable"])
            for mode in report["modes"]:
                status, text, values = mode_row(mode)
                emit(f"{name} {mode['mode']}", text, status=status, **values)
        if code != 0:
            emit(name, failure(code, wall, stderr), status="timeout" if code == TIMED_OUT else "failed")


def train_cli_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    """Two steps of ``scripts.train_unet`` with a checkpoint at step 2, then a resumed third step."""
    from latentsync.models.checkpoint import read_checkpoint

    work = fresh_folder(ctx, "train_cli")
    output = work / "run"
    made = ctx.made
    config = PROJECT_ROOT / "configs/unet" / ("stage2_tiny_cpu.yaml" if ctx.tiny else "stage2.yaml")
    overrides = [
        f"data.train_fileslist={made['train_list']}", f"data.val_fileslist={made['val_list']}",
        f"data.audio_embeds_cache_dir={work / 'cache' / 'embeds'}", f"data.audio_mel_cache_dir={work / 'cache' / 'mel'}",
        f"data.vae_path={made['vae']}", "data.val_video_path=", "data.val_audio_path=", "data.num_val_samples=1",
        "data.num_workers=0", "data.batch_size=1", "run.validation_steps=1000000", "ckpt.keep_last_n=0",
        "run.max_train_minutes=0", f"run.device={ctx.device}", f"data.whisper_path={made['whisper']}",
    ]
    overrides.append(f"ckpt.init_ckpt_path={made['train_init']}")
    if ctx.tiny:  # the tiny config allows random backbones (logged loudly) where no file is named
        overrides.append("ckpt.syncnet_ckpt_path=")
    else:
        overrides += [f"ckpt.syncnet_ckpt_path={made['syncnet']}", f"ckpt.lpips_vgg_path={made['vgg']}",
                      f"ckpt.videomae_path={made['videomae']}"]
    base = ["-m", "scripts.train_unet", "--config_path", str(config), "--output_dir", str(output), *overrides]
    runs = [("2 steps, checkpoint at step 2", ["run.max_train_steps=2", "ckpt.save_ckpt_steps=2"]),
            ("resumed for step 3", ["run.max_train_steps=3", "ckpt.save_ckpt_steps=1"])]
    for label, extra in runs:
        ok, wall, _ = run_step(ctx, emit, label, base + extra, work / f"{label.split(',')[0].replace(' ', '_')}.log")
        if not ok:
            return
        emit(label, f"exit 0 in {wall:.0f} s (process, model loading and checkpoint writing included)", seconds=wall)
    checkpoints = output / "checkpoints"
    second, third = checkpoints / "checkpoint-2.pt", checkpoints / "checkpoint-3.pt"
    if not second.is_file() or not third.is_file():
        emit("checkpoints", f"missing: {[p.name for p in (second, third) if not p.is_file()]}", status="failed")
        return
    (state_2, step_2), (state_3, step_3) = read_checkpoint(second), read_checkpoint(third)
    changed = [key for key in state_2 if not torch.equal(state_2[key], state_3[key])]
    trained = [key for key in state_2 if any(t in key for t in TRAINABLE)]
    frozen_changed = [key for key in changed if key not in set(trained)]
    history = torch.load(checkpoints / "state-3.pt", map_location="cpu", weights_only=False)["history"]["train"]
    losses = [float(loss) for _, loss in history]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    healthy = step_2 == 2 and step_3 == 3 and finite and changed and not frozen_changed
    emit("checkpoint saved and resumed",
         f"checkpoint-2 (step {step_2}) -> resumed -> checkpoint-3 (step {step_3}); steps logged "
         f"{[s for s, _ in history]} with losses {', '.join(f'{v:.4g}' for v in losses)}; step 3 changed "
         f"{len(changed)} of {len(trained)} trained tensors, {len(frozen_changed)} frozen ones",
         status="ok" if healthy else "failed", losses=losses, changed=len(changed), trained=len(trained),
         frozen_changed=len(frozen_changed))

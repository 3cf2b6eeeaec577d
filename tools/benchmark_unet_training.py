"""Seconds per U-Net training step, peak memory and a sanity check of the step, per config and memory option.

Builds the config's UNet (random weights) and the frozen networks its losses use through the
training code's own loader (``build_frozen_networks``): an SD-sized VAE (a tiny one for configs at
64 px or below), the SyncNet of its ``syncnet_config_path``, LPIPS-VGG and VideoMAE-v2, read from
files in their official formats when given (``--vae_path``, ``--syncnet_path``, ``--vgg_path``,
``--videomae_path``) and randomly initialised otherwise. Then, for each mode, it runs full optimiser
steps (forward, backward, gradient clipping, AdamW) of :func:`latentsync.training.unet.unet_losses`
on a synthetic batch. Modes are ``+``-joined words: ``plain``, ``ckpt`` (gradient checkpointing),
``8bit`` (bitsandbytes' AdamW8bit; CUDA). Each mode reports the seconds of each step (the first
includes warm-up), the peak memory, whether every loss was finite, whether the trainable weights
changed, and the steps the fp16 grad scaler skipped. On CUDA the precision is the training CLI's
(the config's ``run.mixed_precision``: fp16 autocast + grad scaler by default, frozen networks in
that dtype) and the peak is ``torch.cuda.max_memory_reserved`` (what the card must hold, besides
the CUDA context); on the CPU: fp32 and the peak RSS of the process so far.

  python -m tools.benchmark_unet_training --config configs/unet/stage2.yaml --batch_size 1
  python -m tools.benchmark_unet_training --config configs/unet/stage2_512.yaml --modes ckpt ckpt+8bit --steps 2
  OMP_NUM_THREADS=1 python -m tools.benchmark_unet_training --config configs/unet/stage2_tiny_cpu.yaml --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from typing import Callable

import torch

MODE_WORDS = ("plain", "ckpt", "8bit")


def parse_mode(spec: str) -> str:
    words = spec.split("+")
    if not words or any(word not in MODE_WORDS for word in words):
        raise argparse.ArgumentTypeError(f"mode {spec!r}: join {', '.join(MODE_WORDS)} with '+'")
    return spec


def build(config_path: str, device: torch.device, files: dict[str, str | None], vae_folder: str):
    """(config, step settings, unet, trainable parameters, frozen networks, precision) for ``config_path``."""
    from omegaconf import OmegaConf

    from latentsync.config import load_config, to_container
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.paths import SCHEDULER_DIR
    from latentsync.training.setup import select_trainable
    from latentsync.training.unet import StepSettings, build_frozen_networks

    config = load_config(config_path)
    given = {
        "data": {"vae_path": files.get("vae") or vae_folder, "scheduler_config_dir": str(SCHEDULER_DIR)},
        "ckpt": {"syncnet_ckpt_path": files.get("syncnet") or "", "lpips_vgg_path": files.get("vgg") or "",
                 "videomae_path": files.get("videomae") or ""},
        # Files that are not given are randomly initialised (logged loudly by the loaders).
        "run": {"allow_random_init_backbones": not all(files.get(k) for k in ("syncnet", "vgg", "videomae"))},
    }
    config = OmegaConf.merge(config, given)
    settings = StepSettings.from_config(config)
    precision = "fp32"
    if device.type == "cuda" and config.run.get("mixed_precision_training", False):
        precision = config.run.get("mixed_precision", "fp16")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    with torch.device(device):  # random initialisation where the model runs (seconds on a GPU, a minute on a CPU)
        unet = UNet3DConditionModel.from_config(to_container(config.model))
    for module in (unet.conv_in, unet.conv_out):  # a fresh UNet has zeros here, which would hide the backward cost
        torch.nn.init.normal_(module.weight, std=0.02)
    patterns = config.run.get("trainable_modules")
    trainable = select_trainable(unet, list(patterns) if patterns else None)
    networks = build_frozen_networks(config, settings, device, dtype)
    return config, settings, unet, trainable, networks, precision


def write_vae_for(config_path: str, folder: str) -> str:
    """A random VAE folder of the size ``config_path`` trains with: SD's, or the tiny one at 64 px or below."""
    from pathlib import Path

    from latentsync.config import load_config
    from tools.tiny_models import write_sd_vae, write_vae

    if load_config(config_path).data.resolution <= 64:
        return str(write_vae(Path(folder) / "tiny_vae"))
    return str(write_sd_vae(Path(folder) / "sd_vae"))


def synthetic_batch(config, batch_size: int) -> dict[str, torch.Tensor]:
    from latentsync.audio.mel import mel_window_length

    f, r = config.data.num_frames, config.data.resolution
    pixels = lambda: torch.rand(batch_size, f, 3, r, r) * 2 - 1  # noqa: E731
    tokens = 10 * 5  # (before + after + 1) * 2 feature frames x 5 Whisper layers for audio_feat_length [2, 2]
    return {
        "gt_pixel_values": pixels(), "masked_pixel_values": pixels(), "ref_pixel_values": pixels(),
        "masks": torch.ones(batch_size, f, 1, r, r),
        "audio_embeds": torch.randn(batch_size, f, tokens, config.model.cross_attention_dim),
        "mel": torch.randn(batch_size, 1, 80, mel_window_length(f)),
    }


def run_mode(mode: str, built, batch: dict, steps: int, device: torch.device) -> dict:
    """``steps`` optimiser steps in ``mode``; what they cost and whether they trained."""
    from latentsync.training.setup import build_optimizer
    from latentsync.training.unet import unet_losses

    config, settings, unet, trainable, networks, precision = built
    words = set(mode.split("+"))
    result: dict = {"mode": mode, "precision": precision}
    if "ckpt" in words:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()
    try:
        optimizer = build_optimizer(trainable, 1e-5, eight_bit="8bit" in words, device=device)
    except Exception as err:  # noqa: BLE001 - ConfigError naming what is missing (bitsandbytes, CUDA)
        return {**result, "skipped": str(err)}
    cuda = device.type == "cuda"
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    autocast = lambda: torch.autocast(device.type, dtype=autocast_dtype or torch.float32,  # noqa: E731
                                      enabled=autocast_dtype is not None)
    probes = [trainable[0], trainable[len(trainable) // 2], trainable[-1]]
    before = [p.detach().clone() for p in probes]
    unet.train()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    durations, losses, skipped = [], [], 0
    try:
        for _ in range(steps):
            start = time.perf_counter()
            loss, _ = unet_losses(unet, networks, batch, settings, device=device, autocast=autocast)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            scale = scaler.get_scale() if scaler.is_enabled() else 1.0
            scaler.step(optimizer)
            scaler.update()
            skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)  # the scaler backs off after inf/nan
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(device)
            durations.append(time.perf_counter() - start)
            losses.append(float(loss.detach()))
    except torch.OutOfMemoryError:
        result["error"] = f"out of memory at step {len(durations) + 1}"
    if cuda:
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    result.update(
        step_seconds=durations, losses=losses, skipped_steps=skipped,
        finite=bool(losses) and all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
        weights_changed=any(not torch.equal(b, p.detach()) for b, p in zip(before, probes)),
    )
    del optimizer
    if cuda:
        torch.cuda.empty_cache()
    return result


def describe(result: dict) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    peak = result.get("peak_reserved_gib", result.get("peak_rss_gib"))
    times = result["step_seconds"]
    text = (f"{times[-1]:.3f} s/step (first {times[0]:.3f} s), peak {peak:.2f} GiB, losses "
            f"{', '.join(f'{v:.4g}' for v in result['losses'])}, weights changed: {result['weights_changed']}, "
            f"grad-scaler skips: {result['skipped_steps']}") if times else ""
    return "; ".join(part for part in (text, result.get("error", "")) if part)


def benchmark_config(config_path: str, modes: list[str], steps: int, batch_size: int, device: torch.device,
                     files: dict[str, str | None], save: Callable[[dict], None] = lambda report: None) -> dict:
    """Every mode of one config; ``save`` gets the report so far after each mode."""
    with tempfile.TemporaryDirectory(prefix="latentsync-bench-train-") as tmp:
        vae_folder = files.get("vae") or write_vae_for(config_path, tmp)
        built = build(config_path, device, files, vae_folder)
    config, _, unet, trainable, _, precision = built
    report = {"config": config_path, "precision": precision, "batch_size": batch_size,
              "parameters": sum(p.numel() for p in unet.parameters()),
              "trainable": sum(p.numel() for p in trainable), "modes": []}
    batch = synthetic_batch(config, batch_size)
    for mode in modes:
        result = run_mode(mode, built, batch, steps, device)
        report["modes"].append(result)
        save(report)
        print(f"{config_path} {mode}: {describe(result)}", flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="U-Net config (repeatable)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per mode; the first includes warm-up")
    parser.add_argument("--modes", nargs="+", type=parse_mode, default=["ckpt", "plain"],
                        help="plain, ckpt, 8bit or joined: ckpt+8bit (default: ckpt plain)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    for name in ("vae", "syncnet", "vgg", "videomae"):
        parser.add_argument(f"--{name}_path", help=f"{name} weights in the official format (default: random)")
    parser.add_argument("--json", help="also write the results to this JSON file, after each mode")
    args = parser.parse_args(argv)
    from latentsync.utils.device import pick_device

    device = pick_device(args.device)
    files = {name: getattr(args, f"{name}_path") for name in ("vae", "syncnet", "vgg", "videomae")}
    print(f"device {device}, batch {args.batch_size}, {args.steps} steps per mode", flush=True)
    reports: list[dict] = []

    def save(report: dict) -> None:  # after every mode, so that a run stopped early keeps what it measured
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": str(device), "configs": [*reports, report]}, f, indent=1)

    for config_path in args.config:
        reports.append(benchmark_config(config_path, args.modes, args.steps, args.batch_size, device, files, save))
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

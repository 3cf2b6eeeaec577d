"""Seconds per U-Net training step and peak memory for a config, random weights, synthetic batch.

Builds the config's UNet and every frozen network its losses use (an SD-sized VAE, or a tiny one
for configs at 64 px or below; the SyncNet of its ``syncnet_config_path``; LPIPS-VGG; VideoMAE-v2
of ``run.trepa_dims`` or ViT-g) with random weights (no files needed), then times full optimiser
steps (forward, backward, AdamW) of :func:`latentsync.training.unet.unet_losses`, with and
without gradient checkpointing. On CUDA: fp16 autocast with a grad scaler and fp16 frozen
networks, peak memory from ``torch.cuda.max_memory_allocated``; on the CPU: fp32, the peak RSS of the process so far (pass --checkpointing on or off for one mode per process).

  python -m tools.benchmark_unet_training --config configs/unet/stage2.yaml --batch_size 1
  OMP_NUM_THREADS=1 python -m tools.benchmark_unet_training --config configs/unet/stage2_tiny_cpu.yaml --steps 3
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def build(config_path: str, device: torch.device, dtype: torch.dtype, checkpointing: bool):
    from diffusers import DDIMScheduler

    from latentsync.config import load_config, to_container
    from latentsync.models.perceptual import load_lpips_vgg
    from latentsync.models.stable_syncnet import StableSyncNet
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.paths import SCHEDULER_DIR
    from latentsync.training.setup import select_trainable
    from latentsync.training.unet import FrozenNetworks, StepSettings
    from latentsync.trepa.videomae import VideoMAEDimensions, random_videomae
    from tools.train_tiny_vae import build_vae

    config = load_config(config_path)
    settings = StepSettings.from_config(config)
    unet = UNet3DConditionModel.from_config(to_container(config.model)).to(device)
    for module in (unet.conv_in, unet.conv_out):  # a fresh UNet has zeros here, which would hide the backward cost
        torch.nn.init.normal_(module.weight, std=0.02)
    patterns = config.run.get("trainable_modules")
    trainable = select_trainable(unet, list(patterns) if patterns else None)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    if config.data.resolution <= 64:
        vae = build_vae(config.data.resolution, (8, 8, 8, 8), layers_per_block=1, groups=4)
    else:
        vae = build_vae(config.data.resolution, (128, 256, 512, 512), layers_per_block=2, groups=32)
    vae = torch.nn.Module.to(vae.requires_grad_(False).eval(), device=device, dtype=dtype)  # no diffusers cast warning
    if settings.pixel_space_supervise:
        vae.enable_gradient_checkpointing()
    networks = FrozenNetworks(vae, DDIMScheduler.from_pretrained(SCHEDULER_DIR))
    if settings.use_syncnet:
        syncnet_config = load_config(config.data.syncnet_config_path)
        networks.syncnet = StableSyncNet(syncnet_config.model, gradient_checkpointing=True)
        networks.syncnet = networks.syncnet.requires_grad_(False).eval().to(device=device, dtype=dtype)
        networks.syncnet_data = to_container(syncnet_config.data)
    if settings.perceptual_weight:
        networks.lpips = load_lpips_vgg(None, allow_random_init=True, device=device)
    if settings.trepa_weight:
        dims = config.run.get("trepa_dims")
        dims = VideoMAEDimensions(**to_container(dims)) if dims else VideoMAEDimensions()
        networks.videomae = random_videomae(dims, device=device, dtype=dtype, gradient_checkpointing=True)
    return config, settings, unet, trainable, networks


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


def time_steps(config_path: str, batch_size: int, steps: int, checkpointing: bool, device: torch.device) -> tuple[float, float]:
    """(seconds per step after one warm-up step, peak memory in GiB)."""
    from latentsync.training.unet import unet_losses

    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    config, settings, unet, trainable, networks = build(config_path, device, dtype, checkpointing)
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    batch = synthetic_batch(config, batch_size)
    autocast = lambda: torch.autocast(device.type, dtype=torch.float16, enabled=cuda)  # noqa: E731
    unet.train()
    durations = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss, _ = unet_losses(unet, networks, batch, settings, device=device, autocast=autocast)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        durations.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux; the process so far
    return sum(durations[1:]) / steps, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, help="U-Net config (repeatable)")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default="both")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.checkpointing]
    print(f"device {device}, batch {args.batch_size}, {args.steps} timed steps")
    for config_path in args.config:
        for checkpointing in modes:
            try:
                seconds, peak = time_steps(config_path, args.batch_size, args.steps, checkpointing, device)
                result = f"{seconds:.3f} s/step, peak {peak:.2f} GiB"
            except torch.OutOfMemoryError:
                result = "out of memory"
            print(f"{config_path} checkpointing={'on' if checkpointing else 'off'}: {result}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

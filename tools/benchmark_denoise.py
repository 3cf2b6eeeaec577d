"""Real-size speed of the denoising stage (UNet + VAE) on one 16-frame clip, random weights.

Builds the full ``stage2_512`` UNet and an ``sd-vae-ft-mse``-sized VAE with random weights
(no download), then times ``LipsyncPipeline.sync_clip`` (encode, 20 DDIM steps with CFG,
decode) in several set-ups and prints frames/s, peak GPU memory and ratios measured in the
same run: fused (SDPA flash/memory-efficient) vs plain-math attention, half vs single
precision, deep cache on vs off. Meant for a CUDA machine:

  python -m tools.benchmark_denoise --steps 20 --resolution 512
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from latentsync.paths import CONFIGS_DIR


def build_pipeline(config_path: str, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    from latentsync.config import load_config, to_container
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.pipelines.loading import assemble_pipeline

    with torch.device(device):
        unet = UNet3DConditionModel.from_config(to_container(load_config(config_path).model))
        # SD's VAE: four levels of 128/256/512/512 channels, 4 latent channels (the diffusers defaults otherwise).
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
            scaling_factor=0.18215,
        )
    # Random, non-zero weights everywhere (a fresh UNet has zero conv_in/conv_out).
    for module in (unet.conv_in, unet.conv_out):
        torch.nn.init.normal_(module.weight, std=0.02)
    return assemble_pipeline(vae.eval(), unet.eval(), device=device, dtype=dtype)


def time_clip(pipe, args, device, attention: str, deepcache: int | None) -> tuple[float, float, torch.Tensor]:
    from latentsync.utils.mask import load_fixed_mask

    generator = torch.Generator(device).manual_seed(0)
    faces = torch.randint(0, 256, (args.frames, args.resolution, args.resolution, 3), dtype=torch.uint8).numpy()
    audio = torch.randn(args.frames, 50, pipe.unet.config.cross_attention_dim, generator=None).to(device)
    mask = load_fixed_mask(args.resolution)
    noise = pipe.initial_noise(args.resolution, generator)
    if deepcache:
        pipe.enable_deepcache(deepcache)
    else:
        pipe.disable_deepcache()
    backend = sdpa_kernel([SDPBackend.MATH]) if attention == "math" else contextlib.nullcontext()
    with backend:
        pipe.scheduler.set_timesteps(2)
        pipe.sync_clip(faces, audio, noise, mask, guidance_scale=args.guidance_scale)  # warm-up
        pipe.scheduler.set_timesteps(args.steps)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        out = pipe.sync_clip(faces, audio, noise, mask, guidance_scale=args.guidance_scale)
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return args.frames / seconds, torch.cuda.max_memory_allocated(device) / 2**30, out.float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIGS_DIR / "unet" / "stage2_512.yaml"))
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance_scale", type=float, default=1.5)
    parser.add_argument("--skip_fp32", action="store_true", help="leave out the slow single-precision run")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmark_denoise needs a CUDA device")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"clip: {args.frames} frames at {args.resolution}px, {args.steps} DDIM steps, CFG {args.guidance_scale}")

    results = {}
    runs = [("fp16", torch.float16, "fused", None), ("fp16", torch.float16, "math", None),
            ("fp16", torch.float16, "fused", 3), ("bf16", torch.bfloat16, "fused", None)]
    if not args.skip_fp32:
        runs.append(("fp32", torch.float32, "fused", None))
    pipes = {}
    for name, dtype, attention, deepcache in runs:
        if name not in pipes:
            pipes.clear()
            torch.cuda.empty_cache()
            torch.manual_seed(0)
            pipes[name] = build_pipeline(args.config, device, dtype)
        fps, peak, out = time_clip(pipes[name], args, device, attention, deepcache)
        label = f"{name} attention={attention} deepcache={deepcache or 'off'}"
        results[label] = (fps, out)
        print(f"{label:42s} {fps:7.2f} frames/s  peak {peak:6.2f} GiB  finite={bool(torch.isfinite(out).all())}")

    base_fps, base_out = results["fp16 attention=fused deepcache=off"]
    for label, (fps, out) in results.items():
        diff = (out - base_out).abs().max().item()
        print(f"ratio vs fp16 fused: {label:42s} speed x{fps / base_fps:5.2f}  max|diff| {diff:.3g}")


if __name__ == "__main__":
    main()

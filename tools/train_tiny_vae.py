"""Train a small diffusers ``AutoencoderKL`` on face videos, for CPU proofs that cannot download SD's VAE.

A random decoder does not invert its encoder, so a U-Net trained through it could not show a
mouth. This one (four levels, factor 8, 4 latent channels like SD's) learns to reconstruct
the synthetic faces in a few minutes; its ``scaling_factor`` is set to 1/std of its latents, as
SD's 0.18215 was. Prints the held-out reconstruction PSNR last: ``vae_psnr_db=NN.N``.

  python -m tools.train_tiny_vae --train_fileslist data/synthetic/fileslist/train.txt \
      --val_fileslist data/synthetic/fileslist/val.txt --output_dir debug/unet_tiny_cpu/vae --minutes 4
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from latentsync.data.video_dataset import read_video_paths
from latentsync.media.reader import VideoReader

MAX_FRAMES_PER_VIDEO = 64  # frames kept per clip: enough variety, little memory


def load_frames(fileslist: str, resolution: int) -> torch.Tensor:
    """(n, 3, r, r) float32 in [-1, 1]: up to MAX_FRAMES_PER_VIDEO evenly spaced frames of every listed video."""
    frames = []
    for path in read_video_paths(fileslist, None):
        video = list(VideoReader(path, fps=25))
        step = max(1, len(video) // MAX_FRAMES_PER_VIDEO)
        for frame in video[::step][:MAX_FRAMES_PER_VIDEO]:
            frames.append(cv2.resize(frame, (resolution, resolution), interpolation=cv2.INTER_AREA))
    array = np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(array)


def build_vae(
    resolution: int, widths: tuple[int, ...] = (32, 64, 64, 64), layers_per_block: int = 1, groups: int = 32,
    scaling_factor: float = 0.18215,
):
    """An ``AutoencoderKL`` with SD's layout (down by 2 per level after the first, 4 latent channels).

    SD's own VAE is ``widths=(128, 256, 512, 512), layers_per_block=2``.
    """
    from diffusers import AutoencoderKL

    levels = len(widths)
    return AutoencoderKL(
        block_out_channels=widths, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, layers_per_block=layers_per_block, norm_num_groups=groups,
        latent_channels=4, sample_size=resolution, scaling_factor=scaling_factor,
    )


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(reconstruction.clamp(-1, 1), target).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_fileslist", required=True)
    parser.add_argument("--val_fileslist", required=True)
    parser.add_argument("--output_dir", required=True, help="the diffusers folder to write (must not exist)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl_weight", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if os.path.exists(args.output_dir):
        raise SystemExit(f"error: {args.output_dir} exists; remove it or choose another --output_dir")

    torch.manual_seed(args.seed)
    train, val = load_frames(args.train_fileslist, args.resolution), load_frames(args.val_fileslist, args.resolution)
    print(f"{len(train)} training and {len(val)} held-out frames at {args.resolution}px", flush=True)
    vae = build_vae(args.resolution)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    deadline, step = time.monotonic() + 60 * args.minutes, 0
    while time.monotonic() < deadline:
        batch = train[torch.randint(len(train), (args.batch_size,))]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(reconstruction, batch) + args.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)

    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in val.split(64)])
        reconstruction = torch.cat([vae.decode(chunk).sample for chunk in latents.split(64)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    parent = os.path.dirname(os.path.abspath(args.output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-vae-", dir=parent)
    try:
        vae.save_pretrained(staging)
        os.replace(staging, args.output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"{step} steps; scaling_factor {vae.config.scaling_factor:.4f}; saved {args.output_dir}")
    print(f"vae_psnr_db={psnr(reconstruction, val):.1f}")


if __name__ == "__main__":
    main()

"""Lip-sync face-aligned clips to their own audio with a trained UNet, for measuring what it learnt.

The clips are already face-aligned squares (the synthetic set, or preprocessing output), so no
face detection runs: each clip is resized to the UNet's resolution, cut into ``num_frames``
windows (a shorter tail is dropped), and each window goes through the inference pipeline's
``sync_clip`` (same conditioning, guidance and DDIM loop as ``LipsyncPipeline.__call__``). The
output videos carry the original audio; ``OUT/fileslist.txt`` lists them for
``eval.eval_syncnet_acc``.

  python -m tools.generate_synced_clips --unet_config configs/unet/stage2_tiny_cpu.yaml \
      --unet_ckpt CKPT --vae VAE_DIR --whisper WHISPER.pt --fileslist val.txt --output_dir OUT
"""

from __future__ import annotations

import argparse
import os
import tempfile

import cv2
import numpy as np
import torch

from latentsync.data.video_dataset import read_video_paths
from latentsync.pipelines.loading import load_pipeline
from latentsync.face.mask import load_fixed_mask
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from tools.write_fileslist import write_fileslist


def synced_frames(pipe, path: str, steps: int, guidance_scale: float, seed: int) -> np.ndarray:
    """(n, r, r, 3) uint8: the clip's full windows with the mouth generated from its own audio."""
    r, f = pipe.resolution, pipe.num_frames
    faces = np.stack([cv2.resize(x, (r, r), interpolation=cv2.INTER_AREA) for x in VideoReader(path, fps=25)])
    features = pipe.audio_encoder.audio2feat(path)
    mask = load_fixed_mask(r, pipe.mask_image_path)
    generator = pipe.make_generator(seed)
    noise = pipe.initial_noise(r, generator)
    out = []
    for start in range(0, len(faces) - f + 1, f):
        pipe.scheduler.set_timesteps(steps)
        tokens = pipe.audio_tokens(features, range(start, start + f)).to(pipe.unet.device, pipe.dtype)
        synced = pipe.sync_clip(faces[start : start + f], tokens, noise, mask, guidance_scale, generator=generator)
        out.append(((synced.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet_config", required=True)
    parser.add_argument("--unet_ckpt", required=True)
    parser.add_argument("--vae", required=True, help="diffusers AutoencoderKL folder")
    parser.add_argument("--whisper", required=True)
    parser.add_argument("--fileslist", required=True, help="face-aligned clips with audio")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance_scale", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=1247)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = load_pipeline(args.unet_config, args.unet_ckpt, whisper_path=args.whisper, vae_path=args.vae,
                         device="cpu", dtype=torch.float32, face_detector=None)
    os.makedirs(args.output_dir, exist_ok=True)
    for path in read_video_paths(args.fileslist, None):
        frames = synced_frames(pipe, path, args.steps, args.guidance_scale, args.seed)
        target = os.path.join(args.output_dir, os.path.basename(path))
        with tempfile.TemporaryDirectory() as tmp:
            silent = os.path.join(tmp, "video.mp4")
            with VideoWriter(silent, 25, frames.shape[2], frames.shape[1]) as writer:
                for frame in frames:
                    writer.write(frame)
            mux_audio(silent, path, target)
        print(f"{target}: {len(frames)} frames", flush=True)
    write_fileslist(os.path.join(args.output_dir, "fileslist.txt"), [args.output_dir])


if __name__ == "__main__":
    main()

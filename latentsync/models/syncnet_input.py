"""What StableSyncNet sees: a batch of face frames stacked (pixel mode) or VAE-encoded (latent mode).

Shared by SyncNet training, its accuracy scorer and, through the same functions, the U-Net's
sync loss, so every caller feeds the network the same layout and latent scaling.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch

from latentsync.errors import CheckpointError


def load_frozen_vae(path: str | os.PathLike, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A diffusers ``AutoencoderKL`` from a local folder, in eval mode with gradients off."""
    from diffusers import AutoencoderKL

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"VAE folder not found: {path} (run `bash setup_env.sh` or set data.vae_path)")
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
    vae.requires_grad_(False)
    return vae.eval().to(device)


def vae_latent_scaling(vae: torch.nn.Module) -> tuple[float, float]:
    """(scaling_factor, shift_factor) of a diffusers VAE: model latents = (z - shift_factor) * scaling_factor."""
    return vae.config.scaling_factor, getattr(vae.config, "shift_factor", None) or 0.0


def syncnet_visual_input(
    frames: torch.Tensor,
    lower_half: bool,
    vae: torch.nn.Module | None = None,
    scaling_factor: float | None = None,
    shift_factor: float = 0.0,
) -> torch.Tensor:
    """Stack a batch of frames (b, f, 3, H, W) into the visual encoder's (b, f*c, h, w) input.

    Pixel mode: frames are used as they are (the data set already cut the lower half).
    Latent mode: each frame is encoded by ``vae`` (sampled, then shifted and scaled by the VAE's
    own ``shift_factor``/``scaling_factor`` unless ``scaling_factor`` is given) and the lower
    half of the latent is kept when ``lower_half``, as in the reference.
    """
    b, f = frames.shape[:2]
    if vae is not None:
        if scaling_factor is None:
            scaling_factor, shift_factor = vae_latent_scaling(vae)
        flat = frames.flatten(0, 1).to(dtype=next(vae.parameters()).dtype)
        with torch.no_grad():
            latents = vae.encode(flat).latent_dist.sample()
        if shift_factor:
            latents = latents - shift_factor
        frames = (latents * scaling_factor).unflatten(0, (b, f)).to(frames.dtype)
        if lower_half:
            frames = frames[..., frames.shape[-2] // 2 :, :]
    return frames.flatten(1, 2)


def syncnet_embeddings(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    vae: torch.nn.Module | None,
    lower_half: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vision_embeds, audio_embeds) of a SyncNet data-set batch (``frames``, ``audio_samples``)."""
    frames = syncnet_visual_input(batch["frames"].to(device, non_blocking=True), lower_half, vae)
    return model(frames, batch["audio_samples"].to(device, non_blocking=True))

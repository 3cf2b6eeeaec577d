"""Latent arithmetic used by the lip-sync pipeline and by training, as small pure functions: the UNet's
input layout, initial noise, VAE scaling, the one-step x0 estimate, the mask at latent size, and
the paste of the untouched surroundings after decoding.

Shapes follow the UNet's video layout: latents are ``(batch, channels, frames, height, width)``.
Nothing here touches files, modules or global state; the DDIM update itself is diffusers'
``DDIMScheduler.step``, classifier-free guidance is in :mod:`latentsync.pipelines.guidance`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Channel layout of the UNet input: noisy latents, mask, masked-image latents, reference latents.
UNET_INPUT_ORDER = ("noisy_latents", "mask", "masked_image_latents", "reference_latents")


def one_step_sampling(
    alphas_cumprod: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """Predicted clean sample x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t), per sample's timestep.

    ``alphas_cumprod``: (T,) from the scheduler; ``timesteps``: (B,) integers; ``x_t``/``eps``: (B, ...).
    No clipping (the scheduler config has ``clip_sample: false``); epsilon prediction only.
    """
    abar = alphas_cumprod.to(device=x_t.device)[timesteps.to(device=x_t.device).long()].to(eps.dtype)
    abar = abar.reshape(-1, *([1] * (x_t.dim() - 1)))
    return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()


def mask_to_latent_size(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Nearest downsampling of a (N, 1, H, W) pixel mask: latent cell (i, j) reads pixel (i*s, j*s).

    That is ``F.interpolate``'s default "nearest" mode, which the released weights were trained with;
    area averaging would soften the mouth edge the model expects.
    """
    return F.interpolate(mask, size=latent_hw, mode="nearest")


def shared_initial_noise(
    num_frames: int,
    channels: int,
    latent_hw: tuple[int, int],
    *,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None = None,
    init_noise_sigma: float = 1.0,
) -> torch.Tensor:
    """One frame of Gaussian noise repeated over every frame of the video: (1, C, num_frames, h, w).

    Sharing the draw over the whole video makes each 16-frame clip start from the same noise, so clips
    can be processed one at a time without seams. The draw happens on the generator's device (CPU
    generators on MPS), then moves to ``device``.
    """
    draw_device = generator.device if generator is not None else (device if device.type != "mps" else "cpu")
    noise = torch.randn((1, channels, 1, *latent_hw), generator=generator, device=draw_device, dtype=dtype)
    noise = noise.to(device) * init_noise_sigma
    return noise.expand(-1, -1, num_frames, -1, -1).contiguous()


def frame_noise(noise_one_frame: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Expand a stored (1, C, 1, h, w) draw to a clip of ``num_frames`` frames (no copy of the data)."""
    return noise_one_frame.expand(-1, -1, num_frames, -1, -1)


def unet_input(
    noisy_latents: torch.Tensor,
    mask_latents: torch.Tensor,
    masked_image_latents: torch.Tensor,
    reference_latents: torch.Tensor,
) -> torch.Tensor:
    """Concatenate along channels in the order the weights expect: 4 + 1 + 4 + 4 = 13 channels."""
    return torch.cat([noisy_latents, mask_latents, masked_image_latents, reference_latents], dim=1)


def vae_scale(latents: torch.Tensor, scaling_factor: float, shift_factor: float = 0.0) -> torch.Tensor:
    """Raw VAE latents to the diffusion model's units: (z - shift) * scale."""
    return (latents - shift_factor) * scaling_factor


def vae_unscale(latents: torch.Tensor, scaling_factor: float, shift_factor: float = 0.0) -> torch.Tensor:
    """Diffusion latents back to raw VAE latents for decoding: z / scale + shift."""
    return latents / scaling_factor + shift_factor


def paste_surroundings(generated: torch.Tensor, original: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
    """Keep the original pixels where ``keep_mask`` is 1 and the generated ones where it is 0."""
    return generated * (1 - keep_mask) + original * keep_mask

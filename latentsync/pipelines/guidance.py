"""Classifier-free guidance with silent audio as the null condition, as small pure functions.

With a scale above 1 the UNet sees a doubled batch, ``[unconditional, conditional]``: the null
half gets all-zero audio features, both halves the same latents and conditioning; the two noise
predictions are then combined. At 1 or below nothing is doubled.
"""

from __future__ import annotations

import torch


def uses_guidance(guidance_scale: float) -> bool:
    """Classifier-free guidance only pays for its doubled batch when the scale exceeds 1."""
    return guidance_scale > 1.0


def guided_noise(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: move the prediction away from the unconditional one by ``guidance_scale``."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def split_and_guide(noise_pred: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Combine a ``[unconditional, conditional]`` doubled batch into one prediction (identity without CFG)."""
    if not uses_guidance(guidance_scale):
        return noise_pred
    eps_uncond, eps_cond = noise_pred.chunk(2)
    return guided_noise(eps_uncond, eps_cond, guidance_scale)


def with_null_audio(audio_embeds: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Prepend all-zero audio (the null condition) when CFG is on; rows stay ``batch*frames`` ordered."""
    if not uses_guidance(guidance_scale):
        return audio_embeds
    return torch.cat([torch.zeros_like(audio_embeds), audio_embeds])


def double_for_guidance(x: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Repeat a conditioning tensor for both halves of the CFG batch (identity without CFG)."""
    return torch.cat([x, x]) if uses_guidance(guidance_scale) else x

"""Diffusion-training numerics for the U-Net as small pure functions: noise draws and audio dropout.

Latents are ``(batch, channels, frames, h, w)``; audio embeddings ``(batch, frames, tokens, dim)``.
The one-step x0 estimate and the UNet input layout are shared with inference
(:mod:`latentsync.pipelines.guidance`).
"""

from __future__ import annotations

import math

import torch


def mixed_noise_stds(alpha: float) -> tuple[float, float]:
    """Standard deviations ``(shared, independent)`` of the mixed-noise prior (arXiv 2305.10474).

    Variances ``alpha^2/(1+alpha^2)`` and ``1/(1+alpha^2)`` sum to 1, so the noise stays unit
    Gaussian per element while frames correlate with coefficient ``alpha^2/(1+alpha^2)``.
    """
    variance_shared = alpha**2 / (1 + alpha**2)
    return math.sqrt(variance_shared), math.sqrt(1 - variance_shared)


def training_noise(
    like: torch.Tensor, *, mixed: bool, alpha: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise shaped like ``like`` (b, c, f, h, w).

    ``mixed``: a per-video draw shared by every frame plus an independent per-frame draw, split
    by :func:`mixed_noise_stds`. Otherwise one draw repeated over all frames (arXiv 2308.09716),
    which is also how inference starts.
    """
    batch, channels, frames, height, width = like.shape
    options = {"generator": generator, "device": like.device, "dtype": like.dtype}
    shared = torch.randn((batch, channels, 1, height, width), **options).expand(-1, -1, frames, -1, -1)
    if not mixed:
        return shared.contiguous()
    shared_std, independent_std = mixed_noise_stds(alpha)
    return shared * shared_std + torch.randn(like.shape, **options) * independent_std


def drop_audio(audio_embeds: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """Replace the audio of the samples where ``dropped`` (``[b]`` bool) is set by the null condition.

    The null condition is all zeros, as inference's classifier-free guidance uses
    (:func:`latentsync.pipelines.guidance.with_null_audio`).
    """
    dropped = dropped.to(device=audio_embeds.device, dtype=torch.bool)
    dropped = dropped.reshape(-1, *([1] * (audio_embeds.dim() - 1)))
    return torch.where(dropped, torch.zeros_like(audio_embeds), audio_embeds)


def audio_dropout_draw(batch: int, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which samples of a batch lose their audio this step: ``[batch]`` bool, each with ``probability``."""
    if probability <= 0:
        return torch.zeros(batch, dtype=torch.bool)
    return torch.rand(batch, generator=generator) < probability

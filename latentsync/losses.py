"""Training losses shared by the SyncNet and UNet training scripts.

Each loss is a function of tensors that returns per-sample values (no reduction), so a
caller can weight or mask before taking ``.mean()``. Losses that need a network (LPIPS,
TREPA) take it as an argument; the script builds, freezes and places it once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Audio-visual sync
# ---------------------------------------------------------------------------


def cosine_loss(vision_embeds: torch.Tensor, audio_embeds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the embeddings' cosine similarity and the sync label ``y``.

    ``vision_embeds``/``audio_embeds`` ``[b, D]`` (non-negative, as SyncNets produce, so the
    similarity is a probability in [0, 1]); ``y`` ``[b, 1]`` or ``[b]``, 1 = in sync. Returns
    ``[b]`` float32, log terms clamped at -100 as in ``torch.nn.BCELoss``. Computed in float32
    and outside autocast (where CUDA refuses BCE), whatever the caller's precision.
    """
    similarity = F.cosine_similarity(vision_embeds.float(), audio_embeds.float(), dim=1)
    # Unit vectors can round to a similarity of 1 + 1e-7, which BCE rejects; that excess is noise.
    similarity = similarity.clamp(max=1.0)
    target = y.to(similarity).reshape(similarity.shape)
    with _autocast_disabled(similarity.device):
        return F.binary_cross_entropy(similarity, target, reduction="none")


def _autocast_disabled(device: torch.device) -> torch.autocast:
    # Disabling is a no-op where autocast is off; device types autocast does not know fall back to CPU's.
    device_type = device.type if device.type in ("cuda", "cpu", "mps", "xpu") else "cpu"
    return torch.autocast(device_type, enabled=False)


# ---------------------------------------------------------------------------
# U-Net training: denoising and pixel-space supervision
# ---------------------------------------------------------------------------


def noise_prediction_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error ``[b]`` in float32 between the predicted and the true noise.

    Equal-sized samples make ``.mean()`` the reference's ``F.mse_loss(..., reduction="mean")``.
    """
    return (predicted.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def lower_half(images: torch.Tensor) -> torch.Tensor:
    """Rows ``h//2:`` of ``[..., h, w]`` images: the mouth region that the mask hides."""
    return images[..., images.shape[-2] // 2 :, :]


def perceptual_loss(lpips_model: torch.nn.Module, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """LPIPS ``[n]`` (float32) on the lower half of ``[n, 3, h, w]`` frames in [-1, 1].

    ``lpips_model`` is an ``lpips.LPIPS`` (see :func:`latentsync.models.perceptual.load_lpips_vgg`);
    inputs are cast to its weight dtype.
    """
    dtype = next(lpips_model.parameters()).dtype
    distance = lpips_model(lower_half(generated).to(dtype), lower_half(real).to(dtype))
    return distance.flatten().float()

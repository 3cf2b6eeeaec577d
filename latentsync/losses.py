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

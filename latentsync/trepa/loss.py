"""TREPA: temporal representation alignment between generated and real videos.

The distance between the L2-normalised VideoMAE-v2 features of the two clips, which rewards
temporally coherent motion that per-frame losses cannot see. Used by U-Net stage-2 training
(``run.trepa_loss_weight``) on the decoded one-step prediction and the ground-truth pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from latentsync.trepa.videomae import VideoMAEv2


def videomae_input(video: torch.Tensor, size: int) -> torch.Tensor:
    """``(b, c, f, h, w)`` in [-1, 1] to the model's input: each frame bicubic-resized to ``size``, in [0, 1].

    Bicubic without antialiasing (a downscale from 256/512 in training), then ``x/2 + 0.5``
    clamped, since bicubic overshoots; no mean/std normalisation.
    """
    frames = rearrange(video, "b c f h w -> (b f) c h w")
    frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
    frames = (frames / 2 + 0.5).clamp(0, 1)
    return rearrange(frames, "(b f) c h w -> b c f h w", f=video.shape[2])


def normalized_features(model: VideoMAEv2, video: torch.Tensor) -> torch.Tensor:
    """Unit-length pooled features ``(b, embed_dim)`` in float32 of a ``(b, c, f, h, w)`` clip in [-1, 1]."""
    weight_dtype = model.patch_embed.proj.weight.dtype
    features = model.forward_features(videomae_input(video, model.dims.img_size).to(weight_dtype))
    return F.normalize(features.float(), p=2, dim=1)


def trepa_loss(model: VideoMAEv2, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-sample ``(b,)`` mean squared distance of the normalised features; ``.mean()`` is the reference loss.

    ``generated``/``real``: ``(b, c, f, h, w)`` in [-1, 1]. Gradients flow into ``generated``
    only: the real clip's features are computed without a graph.
    """
    generated_features = normalized_features(model, generated)
    with torch.no_grad():
        real_features = normalized_features(model, real)
    return (generated_features - real_features).pow(2).mean(dim=1)

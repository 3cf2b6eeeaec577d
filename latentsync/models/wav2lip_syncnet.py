"""Wav2Lip-style SyncNet (conv + BatchNorm), kept as the ablation baseline for StableSyncNet.

The architecture is fixed: 5 RGB frames of the lower half of 256x256 faces, stacked as
``[b, 15, 128, 256]``, and a ``[b, 1, 80, 16]`` mel window, each mapped to a 1024-d unit
vector. Module names equal upstream's, so its state dicts (BatchNorm statistics included)
load strictly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


class _Layer(NamedTuple):
    """One conv unit: channels, kernel, stride, padding; ``residual`` adds the input (same shape);
    ``act`` None means the network-wide activation."""

    cin: int
    cout: int
    kernel: int
    stride: int | tuple[int, int]
    padding: int
    residual: bool = False
    act: str | None = None


def _residuals(channels: int, count: int) -> list[_Layer]:
    return [_Layer(channels, channels, 3, 1, 1, residual=True)] * count


# Spatial sizes after each downsampling unit are noted for the nominal input.
_VISUAL_LAYERS = [
    _Layer(15, 32, 7, 1, 3),  # 128 x 256
    _Layer(32, 64, 5, (1, 2), 1),  # 126 x 127
    *_residuals(64, 2),
    _Layer(64, 128, 3, 2, 1),  # 63 x 64
    *_residuals(128, 3),
    _Layer(128, 256, 3, 3, 1),  # 21 x 22
    *_residuals(256, 2),
    _Layer(256, 512, 3, 2, 1),  # 11 x 11
    *_residuals(512, 2),
    _Layer(512, 1024, 3, 2, 1),  # 6 x 6
    *_residuals(1024, 2),
    _Layer(1024, 1024, 3, 2, 1, act="relu"),  # 3 x 3
    _Layer(1024, 1024, 3, 1, 0, act="relu"),  # 1 x 1
    _Layer(1024, 1024, 1, 1, 0, act="relu"),
]

_AUDIO_LAYERS = [
    _Layer(1, 32, 3, 1, 1),  # 80 x 16
    *_residuals(32, 2),
    _Layer(32, 64, 3, (3, 1), 1),  # 27 x 16
    *_residuals(64, 2),
    _Layer(64, 128, 3, 3, 1),  # 9 x 6
    *_residuals(128, 2),
    _Layer(128, 256, 3, (3, 2), 1),  # 3 x 3
    *_residuals(256, 2),
    _Layer(256, 512, 3, 1, 1),
    *_residuals(512, 2),
    _Layer(512, 1024, 3, 1, 0, act="relu"),  # 1 x 1
    _Layer(1024, 1024, 1, 1, 0, act="relu"),
]


class ConvBNAct(nn.Module):
    """Conv, BatchNorm, optional residual add, activation; ``conv_block`` holds ``[conv, bn]``."""

    def __init__(self, layer: _Layer, act_fn: str):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(layer.cin, layer.cout, layer.kernel, layer.stride, layer.padding),
            nn.BatchNorm2d(layer.cout),
        )
        self.residual = layer.residual
        self.act_fn = _ACTIVATIONS[layer.act or act_fn]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act_fn(out + x if self.residual else out)


class Wav2LipSyncNet(nn.Module):
    """Visual and audio conv stacks -> ``(vision_embeds, audio_embeds)``, each ``[b, 1024]`` unit vectors.

    ``act_fn`` is the hidden activation (``relu``, ``leaky`` (slope 0.2), ``tanh``, ``silu``); the
    last units always use ReLU, so the embeddings are non-negative.
    """

    def __init__(self, act_fn: str = "leaky"):
        super().__init__()
        if act_fn not in _ACTIVATIONS:
            raise ValueError(f"unknown act_fn {act_fn!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.visual_encoder = nn.Sequential(*(ConvBNAct(layer, act_fn) for layer in _VISUAL_LAYERS))
        self.audio_encoder = nn.Sequential(*(ConvBNAct(layer, act_fn) for layer in _AUDIO_LAYERS))

    def forward(
        self, image_sequences: torch.Tensor, audio_sequences: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[b, 15, 128, 256]`` faces and ``[b, 1, 80, 16]`` mels -> two ``[b, 1024]`` unit vectors."""
        dtype = self.audio_encoder[0].conv_block[0].weight.dtype
        vision = self.visual_encoder(image_sequences.to(dtype)).flatten(1)
        audio = self.audio_encoder(audio_sequences.to(dtype)).flatten(1)
        return F.normalize(vision, p=2, dim=1), F.normalize(audio, p=2, dim=1)

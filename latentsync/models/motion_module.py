"""AnimateDiff-style motion modules: self-attention along the frame axis at every pixel.

Stage 2 of LatentSync 1.0-1.5 trained these; they ignore the timestep and the audio. With
``zero_initialize`` a fresh module is an identity, so adding it to trained stage-1 weights
changes nothing until it is trained.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from diffusers.models.attention import FeedForward
from einops import rearrange
from torch import nn

from latentsync.errors import ConfigError
from latentsync.models.attention import Attention

MOTION_MODULE_TYPES = ("Vanilla",)
ATTENTION_BLOCK_TYPES = ("Temporal_Self",)
MOTION_MODULE_GROUPS = 32  # fixed, whatever the UNet's norm_num_groups


def get_motion_module(in_channels: int, motion_module_type: str, motion_module_kwargs: dict) -> nn.Module:
    """Build the motion module named in the config for a level with ``in_channels`` channels."""
    if motion_module_type not in MOTION_MODULE_TYPES:
        raise ConfigError(f"unknown motion_module_type {motion_module_type!r}; expected one of {MOTION_MODULE_TYPES}")
    return VanillaTemporalModule(in_channels, **motion_module_kwargs)


class PositionalEncoding(nn.Module):
    """Adds a fixed sinusoidal table ``pe[1, max_len, dim]`` (sin on even, cos on odd channels).

    ``pe`` is a persistent buffer because the official checkpoints store it.
    """

    def __init__(self, dim: int, max_len: int = 24):
        super().__init__()
        positions = torch.arange(max_len).unsqueeze(1)
        frequencies = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(positions * frequencies)
        pe[0, :, 1::2] = torch.cos(positions * frequencies)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[n, frames, dim]`` with ``frames <= max_len``."""
        frames, max_len = x.shape[1], self.pe.shape[1]
        if frames > max_len:
            raise ValueError(f"motion modules handle at most {max_len} frames per call, got {frames}")
        return x + self.pe[:, :frames].to(x.dtype)


class TemporalSelfAttention(Attention):
    """Self-attention over frames; the positional code is added to its (normalised) input only."""

    def __init__(self, dim: int, heads: int, head_dim: int, position_encoding: bool, max_len: int):
        super().__init__(dim, heads, head_dim)
        self.pos_encoder = PositionalEncoding(dim, max_len) if position_encoding else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[n, frames, dim]`` -> ``[n, frames, dim]``."""
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        return super().forward(x)


class TemporalTransformerBlock(nn.Module):
    """Pre-LayerNorm temporal attention blocks (residual taken before the norm and position code), then GEGLU FF."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        attention_block_types: Sequence[str],
        position_encoding: bool,
        max_len: int,
    ):
        super().__init__()
        unknown = [name for name in attention_block_types if name not in ATTENTION_BLOCK_TYPES]
        if unknown:
            raise ConfigError(f"unknown attention_block_types {unknown}; expected entries from {ATTENTION_BLOCK_TYPES}")
        self.attention_blocks = nn.ModuleList(
            [TemporalSelfAttention(dim, heads, head_dim, position_encoding, max_len) for _ in attention_block_types]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in attention_block_types])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[n, frames, dim]``: one sequence per pixel of each clip."""
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x))
        return x + self.ff(self.ff_norm(x))


class TemporalTransformer3DModel(nn.Module):
    """GN per frame -> Linear proj_in -> temporal blocks on ``[b*h*w, frames, inner]`` -> proj_out -> + input."""

    def __init__(
        self,
        in_channels: int,
        heads: int,
        head_dim: int,
        num_layers: int,
        attention_block_types: Sequence[str],
        position_encoding: bool,
        max_len: int,
    ):
        super().__init__()
        inner_dim = heads * head_dim
        self.norm = nn.GroupNorm(MOTION_MODULE_GROUPS, in_channels, eps=1e-6)
        self.proj_in = nn.Linear(in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            [
                TemporalTransformerBlock(inner_dim, heads, head_dim, attention_block_types, position_encoding, max_len)
                for _ in range(num_layers)
            ]
        )
        self.proj_out = nn.Linear(inner_dim, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[b, c, f, h, w]`` -> same shape."""
        batch, _, _, height, width = x.shape
        normed = self.norm(rearrange(x, "b c f h w -> (b f) c h w"))  # statistics per frame
        tokens = self.proj_in(rearrange(normed, "(b f) c h w -> (b h w) f c", b=batch))
        for block in self.transformer_blocks:
            tokens = block(tokens)
        out = rearrange(self.proj_out(tokens), "(b h w) f c -> b c f h w", b=batch, h=height, w=width)
        return out + x


class VanillaTemporalModule(nn.Module):
    """A temporal transformer with ``num_attention_heads`` heads of size ``C // heads // dim_div``.

    Argument names are those of the YAML ``motion_module_kwargs``.
    """

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 1,
        attention_block_types: Sequence[str] = ("Temporal_Self", "Temporal_Self"),
        temporal_position_encoding: bool = True,
        temporal_position_encoding_max_len: int = 24,
        temporal_attention_dim_div: int = 1,
        zero_initialize: bool = True,
    ):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(
            in_channels,
            heads=num_attention_heads,
            head_dim=in_channels // num_attention_heads // temporal_attention_dim_div,
            num_layers=num_transformer_block,
            attention_block_types=attention_block_types,
            position_encoding=temporal_position_encoding,
            max_len=temporal_position_encoding_max_len,
        )
        if zero_initialize:
            nn.init.zeros_(self.temporal_transformer.proj_out.weight)
            nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[b, c, f, h, w]`` with ``f <= temporal_position_encoding_max_len`` -> same shape."""
        return self.temporal_transformer(x)

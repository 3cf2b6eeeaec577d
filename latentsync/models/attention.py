"""Spatial transformer of the video UNet: per-frame self-attention plus cross-attention to audio.

Each frame is an independent sequence of ``h*w`` tokens; its cross-attention reads the audio
tokens of that same frame only (row ``b*frames + f`` of ``encoder_hidden_states``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention`` (scale 1/sqrt(head_dim), no mask).

    Head ``i`` owns channels ``i*head_dim ... (i+1)*head_dim - 1`` of q, k and v.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner_dim = heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        # A list so that the key is ``to_out.0``, as in the official checkpoints.
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[n, L, query_dim]``, context ``[n, S, context_dim]`` (default x) -> ``[n, L, query_dim]``."""
        context = x if context is None else context
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](rearrange(out, "n heads L d -> n L (heads d)"))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        return rearrange(t, "n L (heads d) -> n heads L d", heads=self.heads)


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block on ``[n, L, dim]`` tokens: self-attention, optional cross-attention, GEGLU FF."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int | None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim // heads)
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, dim // heads, context_dim=cross_attention_dim)
        else:
            self.attn2 = None
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[n, L, dim]``; context ``[n, S, cross_attention_dim]`` or None (cross-attention skipped)."""
        x = x + self.attn1(self.norm1(x))
        if self.attn2 is not None and context is not None:
            x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer3DModel(nn.Module):
    """GN -> 1x1 proj_in -> transformer over each frame's ``h*w`` tokens -> 1x1 proj_out -> + input.

    ``num_heads`` heads of size ``in_channels // num_heads``. Without ``add_audio_layer`` the block
    has no cross-attention weights at all.
    """

    def __init__(
        self,
        in_channels: int,
        num_heads: int,
        norm_num_groups: int,
        cross_attention_dim: int,
        add_audio_layer: bool,
    ):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6)
        self.proj_in = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(in_channels, num_heads, cross_attention_dim if add_audio_layer else None)]
        )
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[b, c, f, h, w]``, encoder_hidden_states ``[b*f, S, d]`` or None -> ``[b, c, f, h, w]``."""
        batch, _, _, height, _ = x.shape
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        tokens = rearrange(self.proj_in(self.norm(frames)), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            tokens = block(tokens, encoder_hidden_states)
        out = self.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=height)) + frames
        return rearrange(out, "(b f) c h w -> b c f h w", b=batch)

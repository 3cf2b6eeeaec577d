"""VideoMAE-v2 ViT: the frozen video feature extractor behind the TREPA loss.

A fine-tuned video ViT: 3-D patches (2 frames x 14 x 14 pixels) plus a fixed sinusoid position
table, pre-LayerNorm transformer blocks, mean pooling and ``fc_norm``. TREPA only uses the pooled
features (:meth:`VideoMAEv2.forward_features`); the classifier ``head`` exists so that the
official ``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (ViT-g, SSv2 fine-tune) loads strictly: module
names equal the official ones. Stochastic depth is left out: the model is only ever run frozen.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from latentsync.models.checkpoint import load_weights, read_checkpoint

POSITION_BASE = 10000.0  # sinusoid table: angle = position / 10000^(2*floor(j/2)/dim)
TIME_RESAMPLE_EPS = 0.1  # added to the target token-frame count when the table is resampled in time


@dataclass(frozen=True)
class VideoMAEDimensions:
    """Hyper-parameters; the defaults are ViT-g as TREPA loads it (1,011,855,918 parameters)."""

    img_size: int = 224
    patch_size: int = 14
    in_chans: int = 3
    num_classes: int = 174
    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    all_frames: int = 16
    tubelet_size: int = 2

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """Tokens along (time, height, width) for ``all_frames`` frames of ``img_size`` squared."""
        side = self.img_size // self.patch_size
        return self.all_frames // self.tubelet_size, side, side

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """``(num_positions, dim)`` float32: sin of the angle on even columns, cos on odd ones.

    Computed in float64 and rounded once, so every device gets the same table.
    """
    positions = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None]
    pair_index = torch.div(torch.arange(dim, device="cpu"), 2, rounding_mode="floor").to(torch.float64)
    angles = positions / POSITION_BASE ** (2.0 * pair_index / dim)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32)


class PatchEmbed(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch); tokens come out in (t, h, w) order."""

    def __init__(self, dims: VideoMAEDimensions):
        super().__init__()
        kernel = (dims.tubelet_size, dims.patch_size, dims.patch_size)
        self.proj = nn.Conv3d(dims.in_chans, dims.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)  # (b, tokens, dim)


class Attention(nn.Module):
    """Multi-head self-attention; the fused ``qkv`` projection's bias is (q_bias, 0, v_bias): keys get none."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, tokens, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dims: VideoMAEDimensions):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims.embed_dim, eps=dims.norm_eps)
        self.attn = Attention(dims.embed_dim, dims.num_heads, dims.qkv_bias)
        self.norm2 = nn.LayerNorm(dims.embed_dim, eps=dims.norm_eps)
        self.mlp = Mlp(dims.embed_dim, int(dims.embed_dim * dims.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoMAEv2(nn.Module):
    """Video ViT with mean-pooled features. Input ``(b, 3, frames, img, img)`` in [0, 1], no mean/std."""

    def __init__(self, dims: VideoMAEDimensions = VideoMAEDimensions(), gradient_checkpointing: bool = False):
        super().__init__()
        self.dims = dims
        self.gradient_checkpointing = gradient_checkpointing
        self.patch_embed = PatchEmbed(dims)
        self.blocks = nn.ModuleList(Block(dims) for _ in range(dims.depth))
        self.fc_norm = nn.LayerNorm(dims.embed_dim, eps=dims.norm_eps)
        self.head = nn.Linear(dims.embed_dim, dims.num_classes)
        # A fixed table, not a parameter or buffer: official files do not hold it. Kept on the CPU
        # (also when the model is built on the meta device) and moved to the input in forward.
        self.position_table = sinusoid_position_table(math.prod(dims.token_grid), dims.embed_dim)

    def positions_for(self, num_frames: int) -> torch.Tensor:
        """The ``(tokens, dim)`` table for ``num_frames`` input frames: resampled in time when not ``all_frames``."""
        time, height, width = self.dims.token_grid
        target = num_frames // self.dims.tubelet_size
        if target == time:
            return self.position_table
        grid = self.position_table.T.reshape(1, -1, time, height, width)
        scale = (target + TIME_RESAMPLE_EPS) / time
        grid = F.interpolate(grid, scale_factor=(scale, 1.0, 1.0), mode="trilinear")
        return grid.reshape(self.dims.embed_dim, -1).T

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(b, embed_dim)``: mean over all tokens, then ``fc_norm``."""
        x = self.patch_embed(video)
        x = x + self.positions_for(video.shape[2]).to(device=x.device, dtype=x.dtype)
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.fc_norm(x.mean(dim=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Class logits ``(b, num_classes)`` (unused by TREPA; kept for completeness of the checkpoint)."""
        return self.head(self.forward_features(video))


CHECKPOINT_CONTAINERS = ("model", "module")  # the official .pth wraps its state dict in one of these


def load_videomae(
    path: str | os.PathLike,
    dims: VideoMAEDimensions = VideoMAEDimensions(),
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    gradient_checkpointing: bool = False,
) -> VideoMAEv2:
    """Build the ViT, load ``path`` strictly (any missing or extra key is a CheckpointError), freeze it."""
    state_dict, _ = read_checkpoint(path, containers=CHECKPOINT_CONTAINERS)
    with torch.device("meta"):
        model = VideoMAEv2(dims, gradient_checkpointing=gradient_checkpointing)
    # Weights are allocated once, uninitialised, then filled from the file (ViT-g is 4 GB in fp32).
    model.to_empty(device="cpu")
    load_weights(model, state_dict, os.fspath(path))
    return freeze(model).to(device=device, dtype=dtype)


def random_videomae(
    dims: VideoMAEDimensions = VideoMAEDimensions(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    gradient_checkpointing: bool = False,
) -> VideoMAEv2:
    """A frozen model with seeded random weights: for tests and proofs that may not use the real file."""
    generator = torch.Generator().manual_seed(seed)
    model = VideoMAEv2(dims, gradient_checkpointing=gradient_checkpointing)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
    return freeze(model).to(device=device, dtype=dtype)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients for the weights (gradients still flow to the input)."""
    return model.eval().requires_grad_(False)

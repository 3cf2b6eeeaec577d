"""Per-frame convolutions, resampling and the residual block of the video UNet.

Every tensor here is laid out ``(batch, channels, frames, height, width)``. Convolutions are
2-D and see one frame at a time (frames are folded into the batch), so their weights have the
shapes of an image UNet's and Stable Diffusion weights drop in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.activations import get_activation
from einops import rearrange
from torch import nn


class FrameConv2d(nn.Conv2d):
    """A ``Conv2d`` applied to each frame of a ``[b, c, f, h, w]`` video independently."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        y = super().forward(rearrange(x, "b c f h w -> (b f) c h w"))
        return rearrange(y, "(b f) c h w -> b c f h w", b=batch)


class Downsample3D(nn.Module):
    """Halve height and width with a strided 3x3 convolution per frame; frame count is kept."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    """Nearest-neighbour upscaling of height and width, then a 3x3 convolution per frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``size`` is the target ``(h, w)``; default twice the input. The UNet passes the
        size of the skip tensor this output is concatenated with, so odd sizes line up."""
        batch, _, _, height, width = x.shape
        size = (2 * height, 2 * width) if size is None else tuple(size)
        frames = F.interpolate(rearrange(x, "b c f h w -> (b f) c h w"), size=size, mode="nearest")
        return self.conv(rearrange(frames, "(b f) c h w -> b c f h w", b=batch))


class ResnetBlock3D(nn.Module):
    """GN -> act -> conv1 -> +time -> GN -> act -> dropout -> conv2, plus a (1x1-projected) shortcut.

    The GroupNorms are plain ``nn.GroupNorm`` on the 5-D tensor, so their statistics pool over
    all frames of a clip (as in the official weights' training), not frame by frame.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        act_fn: str = "silu",
        dropout: float = 0.0,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = FrameConv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = FrameConv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (
            FrameConv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )
        self.nonlinearity = get_activation(act_fn)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x ``[b, c_in, f, h, w]``, temb ``[b, temb_channels]`` -> ``[b, c_out, f, h, w]``."""
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (shortcut + h) / self.output_scale_factor

"""Down, mid and up blocks of the video UNet, built by name from the config's block-type strings.

A block is a stack of layers, each ``resnet -> [spatial transformer] -> [motion module]``;
down blocks end with a strided conv, up blocks with an upsampler. Modules are registered as
attentions, resnets, motion_modules, resamplers: that is the key order of the official files.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from latentsync.errors import ConfigError
from latentsync.models.resnet import Downsample3D, ResnetBlock3D, Upsample3D

# channels -> module; the UNet binds the config into these (functools.partial).
ModuleFactory = Callable[[int], nn.Module]

DOWN_BLOCK_TYPES = ("CrossAttnDownBlock3D", "DownBlock3D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock3D", "UpBlock3D")


class _Block3D(nn.Module):
    """Holds the per-layer modules and runs each one, under gradient checkpointing when enabled."""

    def __init__(
        self,
        channels: int,
        resnets: Sequence[nn.Module],
        num_layers: int,
        transformer_factory: ModuleFactory | None,
        motion_factory: ModuleFactory | None,
    ):
        super().__init__()
        if transformer_factory is not None:
            self.attentions = nn.ModuleList([transformer_factory(channels) for _ in range(num_layers)])
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(resnets)
        motion_modules = [motion_factory(channels) for _ in range(num_layers)] if motion_factory else []
        self.motion_modules = nn.ModuleList(motion_modules)
        self.gradient_checkpointing = False  # toggled by ModelMixin.enable_gradient_checkpointing

    @property
    def has_cross_attention(self) -> bool:
        return self.attentions is not None

    def _run(self, module: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(module, *args)
        return module(*args)

    def _layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self._run(self.resnets[i], x, temb)
        if self.attentions is not None:
            x = self._run(self.attentions[i], x, context)
        if len(self.motion_modules):
            x = self._run(self.motion_modules[i], x)
        return x


class DownBlock3D(_Block3D):
    """``num_layers`` layers at one resolution, then (unless last) a stride-2 downsampler.

    Returns the hidden state and the skip tensors for the up path: every layer's output and
    the downsampler's output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        resnet_groups: int,
        resnet_eps: float,
        act_fn: str,
        add_downsample: bool,
        downsample_padding: int = 1,
        transformer_factory: ModuleFactory | None = None,
        motion_factory: ModuleFactory | None = None,
    ):
        resnets = [
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, temb_channels, resnet_groups,
                          resnet_eps, act_fn)
            for i in range(num_layers)
        ]
        super().__init__(out_channels, resnets, num_layers, transformer_factory, motion_factory)
        self.downsamplers = nn.ModuleList([Downsample3D(out_channels, downsample_padding)]) if add_downsample else None

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x ``[b, c_in, f, h, w]`` -> (``[b, c_out, f, h', w']``, skip tensors)."""
        skips = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, tuple(skips)


class CrossAttnDownBlock3D(DownBlock3D):
    """A down block whose layers also run a spatial transformer attending to the audio tokens."""

    def __init__(self, *, transformer_factory: ModuleFactory, **kwargs):
        super().__init__(transformer_factory=transformer_factory, **kwargs)


class UpBlock3D(_Block3D):
    """``num_layers`` layers, each first concatenating ``[hidden, skip]`` on channels; then an upsampler.

    ``skip_channels`` is the width of the skip that reaches the last layer (from the level below
    in the down path); the other layers' skips have ``out_channels``.
    """

    def __init__(
        self,
        skip_channels: int,
        prev_output_channel: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        resnet_groups: int,
        resnet_eps: float,
        act_fn: str,
        add_upsample: bool,
        transformer_factory: ModuleFactory | None = None,
        motion_factory: ModuleFactory | None = None,
    ):
        resnets = []
        for i in range(num_layers):
            hidden = prev_output_channel if i == 0 else out_channels
            skip = skip_channels if i == num_layers - 1 else out_channels
            resnets.append(ResnetBlock3D(hidden + skip, out_channels, temb_channels, resnet_groups, resnet_eps, act_fn))
        super().__init__(out_channels, resnets, num_layers, transformer_factory, motion_factory)
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels)]) if add_upsample else None

    def forward(
        self,
        x: torch.Tensor,
        skips: Sequence[torch.Tensor],
        temb: torch.Tensor,
        context: torch.Tensor | None = None,
        upsample_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Consumes ``skips`` from the end (one per layer); ``upsample_size`` is the output ``(h, w)``."""
        for i in range(len(self.resnets)):
            x = torch.cat([x, skips[-1 - i]], dim=1)
            x = self._layer(i, x, temb, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlock3D(UpBlock3D):
    """An up block whose layers also run a spatial transformer attending to the audio tokens."""

    def __init__(self, *, transformer_factory: ModuleFactory, **kwargs):
        super().__init__(transformer_factory=transformer_factory, **kwargs)


class UNetMidBlock3DCrossAttn(_Block3D):
    """resnet -> spatial transformer -> [motion module] -> resnet, at the lowest resolution."""

    def __init__(
        self,
        in_channels: int,
        temb_channels: int,
        resnet_groups: int,
        resnet_eps: float,
        act_fn: str,
        output_scale_factor: float,
        transformer_factory: ModuleFactory,
        motion_factory: ModuleFactory | None = None,
    ):
        resnets = [
            ResnetBlock3D(in_channels, in_channels, temb_channels, resnet_groups, resnet_eps, act_fn,
                          output_scale_factor=output_scale_factor)
            for _ in range(2)
        ]
        super().__init__(in_channels, resnets, 1, transformer_factory, motion_factory)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[b, c, f, h, w]`` -> same shape."""
        x = self._run(self.resnets[0], x, temb)
        x = self._run(self.attentions[0], x, context)
        if len(self.motion_modules):
            x = self._run(self.motion_modules[0], x)
        return self._run(self.resnets[1], x, temb)


def get_down_block(block_type: str, *, transformer_factory: ModuleFactory, **kwargs) -> DownBlock3D:
    """Build a down block from its config name; plain ``DownBlock3D`` gets no transformer."""
    if block_type == "CrossAttnDownBlock3D":
        return CrossAttnDownBlock3D(transformer_factory=transformer_factory, **kwargs)
    if block_type == "DownBlock3D":
        return DownBlock3D(**kwargs)
    raise ConfigError(f"unknown down block type {block_type!r}; expected one of {DOWN_BLOCK_TYPES}")


def get_up_block(block_type: str, *, transformer_factory: ModuleFactory, **kwargs) -> UpBlock3D:
    """Build an up block from its config name; plain ``UpBlock3D`` gets no transformer."""
    if block_type == "CrossAttnUpBlock3D":
        return CrossAttnUpBlock3D(transformer_factory=transformer_factory, **kwargs)
    if block_type == "UpBlock3D":
        return UpBlock3D(**kwargs)
    raise ConfigError(f"unknown up block type {block_type!r}; expected one of {UP_BLOCK_TYPES}")

"""The LatentSync denoiser: a Stable-Diffusion-shaped UNet run on video latents, conditioned on audio.

Input ``[b, 13, f, h, w]`` = noisy latents (4) + mask (1) + masked frame latents (4) + reference
latents (4); output ``[b, 4, f, h, w]`` (predicted noise). Spatial layers see one frame at a
time and cross-attend to that frame's Whisper tokens; optional motion modules attend across
frames. Parameter names equal the official checkpoints' so they load strictly.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin, no_init_weights
from diffusers.utils import BaseOutput
from omegaconf import DictConfig
from torch import nn

from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError
from latentsync.models.attention import Transformer3DModel
from latentsync.models.checkpoint import load_checkpoint, load_weights
from latentsync.models.motion_module import get_motion_module
from latentsync.models.resnet import FrameConv2d
from latentsync.models.unet_blocks import UNetMidBlock3DCrossAttn, get_down_block, get_up_block

logger = logging.getLogger(__name__)

# Key fragments for the two legitimate partial loads (see latentsync.models.checkpoint).
MOTION_MODULE_KEYS = ("motion_modules.",)
STABLE_DIFFUSION_RESHAPED_KEYS = ("conv_in.", "conv_out.", "attn2.to_k", "attn2.to_v")

MID_BLOCK_TYPES = ("UNetMidBlock3DCrossAttn",)


@dataclass
class UNet3DConditionOutput(BaseOutput):
    """``sample``: the prediction, ``[b, out_channels, f, h, w]``."""

    sample: torch.Tensor


class UNet3DConditionModel(ModelMixin, ConfigMixin):
    """Video UNet; hyper-parameters are the ``model:`` section of ``configs/unet/*.yaml``.

    ``attention_head_dim`` is, as in the official configs, the number of attention heads of every
    spatial transformer (head size = channels / heads). Motion modules go in down block ``i`` when
    ``2**i`` is in ``motion_module_resolutions`` and in up block ``i`` when ``2**(levels-1-i)`` is.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 13,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: Sequence[str] = (
            "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D",
        ),
        mid_block_type: str = "UNetMidBlock3DCrossAttn",
        up_block_types: Sequence[str] = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 384,
        attention_head_dim: int = 8,
        add_audio_layer: bool = True,
        resnet_time_scale_shift: str = "default",
        use_motion_module: bool = False,
        motion_module_resolutions: Sequence[int] = (1, 2, 4, 8),
        motion_module_mid_block: bool = False,
        motion_module_decoder_only: bool = False,
        motion_module_type: str = "Vanilla",
        motion_module_kwargs: Mapping | None = None,
    ):
        super().__init__()
        levels = len(block_out_channels)
        if len(down_block_types) != levels or len(up_block_types) != levels:
            raise ConfigError(
                f"down_block_types ({len(down_block_types)}) and up_block_types ({len(up_block_types)}) "
                f"must each have one entry per block_out_channels entry ({levels})"
            )
        if mid_block_type not in MID_BLOCK_TYPES:
            raise ConfigError(f"unknown mid_block_type {mid_block_type!r}; expected one of {MID_BLOCK_TYPES}")
        if resnet_time_scale_shift != "default":
            raise ConfigError(f"resnet_time_scale_shift {resnet_time_scale_shift!r} is not supported; use 'default'")

        channels = list(block_out_channels)
        time_embed_dim = 4 * channels[0]
        common = dict(temb_channels=time_embed_dim, resnet_groups=norm_num_groups, resnet_eps=norm_eps, act_fn=act_fn)
        transformer = partial(
            Transformer3DModel,
            num_heads=attention_head_dim,
            norm_num_groups=norm_num_groups,
            cross_attention_dim=cross_attention_dim,
            add_audio_layer=add_audio_layer,
        )
        motion = partial(
            get_motion_module,
            motion_module_type=motion_module_type,
            motion_module_kwargs=dict(motion_module_kwargs or {}),
        )

        def motion_at(resolution: int, allowed: bool) -> partial | None:
            wanted = use_motion_module and allowed and resolution in motion_module_resolutions
            return motion if wanted else None

        self.conv_in = FrameConv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], time_embed_dim)

        down_blocks = [
            get_down_block(
                block_type,
                in_channels=channels[max(i - 1, 0)],
                out_channels=channels[i],
                num_layers=layers_per_block,
                add_downsample=i < levels - 1,
                downsample_padding=downsample_padding,
                transformer_factory=transformer,
                motion_factory=motion_at(2**i, not motion_module_decoder_only),
                **common,
            )
            for i, block_type in enumerate(down_block_types)
        ]
        up = channels[::-1]
        up_blocks = [
            get_up_block(
                block_type,
                skip_channels=up[min(i + 1, levels - 1)],
                prev_output_channel=up[max(i - 1, 0)],
                out_channels=up[i],
                num_layers=layers_per_block + 1,
                add_upsample=i < levels - 1,
                transformer_factory=transformer,
                motion_factory=motion_at(2 ** (levels - 1 - i), True),
                **common,
            )
            for i, block_type in enumerate(up_block_types)
        ]
        mid_block = UNetMidBlock3DCrossAttn(
            channels[-1],
            output_scale_factor=mid_block_scale_factor,
            transformer_factory=transformer,
            motion_factory=motion if use_motion_module and motion_module_mid_block else None,
            **common,
        )
        # Registration order fixes the state-dict order; the official files list up_blocks before mid_block.
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks)
        self.mid_block = mid_block
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = FrameConv2d(channels[0], out_channels, kernel_size=3, padding=1)
        # A fresh model outputs exactly zero; Stable-Diffusion initialisation keeps these at zero too.
        for conv in (self.conv_in, self.conv_out):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
        deep_cache: Callable[..., Any] | None = None,
    ) -> UNet3DConditionOutput | tuple[torch.Tensor]:
        """Predict noise for ``sample [b, in_channels, f, h, w]``.

        ``timestep``: a number, a 0-d tensor (shared) or a ``[b]`` tensor (one per clip).
        ``encoder_hidden_states``: audio tokens ``[b*f, n, d]`` (row ``i*f + j`` is clip i, frame j)
        or ``[b, f, n, d]``; None skips cross-attention. ``deep_cache``
        (:class:`~latentsync.pipelines.deep_cache.DeepFeatureCache`) runs each block as
        ``deep_cache(key, block, *inputs)``, so it may replay a block's recorded output instead; the
        model itself is never changed, so calls with and without one can share it.
        """
        run = deep_cache if deep_cache is not None else _run_block
        batch, _, frames = sample.shape[:3]
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        timesteps = _timesteps_per_clip(timestep, batch, sample.device)
        # Timesteps computes in fp32; the embedding runs in the model's dtype.
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))
        context = _audio_tokens(encoder_hidden_states, batch, frames, sample.dtype)

        x = self.conv_in(sample)
        skips = [x]
        for i, block in enumerate(self.down_blocks):
            x, block_skips = run(("down", i), block, x, temb, context)
            skips.extend(block_skips)
        x = run(("mid", 0), self.mid_block, x, temb, context)
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            # Upsample straight to the next skip's size, so inputs whose h, w are not multiples of 8 work.
            upsample_size = tuple(skips[-1].shape[-2:]) if skips else None
            x = run(("up", i), block, x, block_skips, temb, context, upsample_size)
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))

        if not return_dict:
            return (x,)
        return UNet3DConditionOutput(sample=x)

    @classmethod
    def from_config_file(cls, path: str | os.PathLike) -> "UNet3DConditionModel":
        """A freshly initialised model from the ``model:`` section of a YAML file."""
        return cls.from_config(_model_section(path))

    @classmethod
    def from_checkpoint(
        cls,
        config: str | os.PathLike | Mapping,
        ckpt_path: str | os.PathLike,
        *,
        allow_new_motion_modules: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> "UNet3DConditionModel":
        """Build from a YAML path (or its ``model:`` mapping) and load an official-format checkpoint strictly.

        ``allow_new_motion_modules=True`` is the stage1 -> stage2 load: the checkpoint may lack
        every ``motion_modules.`` tensor, which then keep their (identity) initialisation. Otherwise
        every weight comes from the file, so none is drawn first (the random draw alone costs ~9 s of
        CPU for the 1.3 G-parameter UNet); the strict load refuses a file that lacks any.
        """
        new_modules = MOTION_MODULE_KEYS if allow_new_motion_modules else ()
        with no_init_weights() if not new_modules else contextlib.nullcontext():
            model = cls.from_config(_model_section(config))
        step = load_checkpoint(model, ckpt_path, new_modules=new_modules)
        logger.info("loaded UNet weights from %s (global step %d)", os.fspath(ckpt_path), step)
        # nn.Module.to: diffusers' ModelMixin.to logs a spurious fp32 warning on every dtype argument.
        return nn.Module.to(model, device=device, dtype=dtype)

    def init_from_stable_diffusion(
        self, state_dict: Mapping[str, torch.Tensor], source: str = "Stable Diffusion UNet"
    ) -> None:
        """Copy a diffusers ``UNet2DConditionModel`` state dict into this model (stage-1 initialisation).

        Names match; ``conv_in``/``conv_out`` (4 vs 13 channels) and the text-width ``attn2.to_k``/
        ``to_v`` may differ in shape and then keep their fresh values; motion modules are new.
        Anything else that does not match raises :class:`CheckpointError`.
        """
        load_weights(self, state_dict, source, new_modules=MOTION_MODULE_KEYS, reshaped=STABLE_DIFFUSION_RESHAPED_KEYS)


def _model_section(config: str | os.PathLike | Mapping) -> dict:
    """The UNet constructor arguments from a YAML path, a whole config mapping, or its ``model:`` part."""
    if isinstance(config, (str, os.PathLike)):
        config = load_config(config, required=("model",))
    if isinstance(config, DictConfig):
        config = to_container(config)
    if "model" in config:
        config = config["model"]
    return dict(config)


def _run_block(key: tuple[str, int], block: nn.Module, *inputs: Any) -> Any:
    """How a block runs without a deep cache: plainly (``key`` names it for a cache)."""
    return block(*inputs)


def _timesteps_per_clip(timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Timesteps as a ``[batch]`` tensor: numbers and 0-d or 1-element tensors are shared by all clips."""
    timesteps = torch.as_tensor(timestep, device=device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    if timesteps.ndim != 1 or timesteps.shape[0] not in (1, batch):
        raise ValueError(f"timestep must be a number or have shape [] or [{batch}], got {tuple(timesteps.shape)}")
    return timesteps.expand(batch)


def _audio_tokens(
    tokens: torch.Tensor | None, batch: int, frames: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """Audio tokens as ``[batch*frames, n, d]`` in the model's dtype (accepts ``[batch, frames, n, d]``)."""
    if tokens is None:
        return None
    if tokens.ndim == 4 and tuple(tokens.shape[:2]) == (batch, frames):
        tokens = tokens.flatten(0, 1)
    if tokens.ndim != 3 or tokens.shape[0] != batch * frames:
        raise ValueError(
            f"encoder_hidden_states must be [{batch * frames}, n, d] or [{batch}, {frames}, n, d] "
            f"for {batch} clips of {frames} frames, got {tuple(tokens.shape)}"
        )
    return tokens.to(dtype)

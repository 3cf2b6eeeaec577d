"""StableSyncNet: the audio-visual sync judge behind LatentSync's sync loss.

Two convolutional encoders map a stack of mouth crops (``[b, frames*3, h, w]`` pixels, or
``[b, frames*4, h, w]`` VAE latents) and the matching mel window (``[b, 1, 80, mel_frames]``)
to unit vectors; their cosine similarity says how well lips and speech agree (see
:func:`latentsync.losses.cosine_loss`).

Hyper-parameters are the ``model:`` section of ``configs/syncnet/*.yaml``. Module names
equal the official ones, so released ``stable_syncnet.pt`` files load strictly.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from omegaconf import DictConfig
from torch import nn
from torch.utils.checkpoint import checkpoint

from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError
from latentsync.models.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

GROUPS = 32  # every GroupNorm of the SyncNet, whatever its width
NORM_EPS = 1e-6
ATTENTION_HEADS = 8

_ENCODER_KEYS = ("in_channels", "block_out_channels", "downsample_factors", "attn_blocks", "dropout")
_REQUIRED_ENCODER_KEYS = ("in_channels", "block_out_channels", "downsample_factors")


@dataclass(frozen=True)
class EncoderConfig:
    """One encoder's hyper-parameters.

    ``downsample_factors[i]`` is stage ``i``'s stride as ``(height, width)``; the YAML writes
    it as an int (both axes) or ``[height, width]``. ``attn_blocks[i]`` puts a self-attention
    block after stage ``i``; a config without ``attn_blocks`` has none.
    """

    in_channels: int
    block_out_channels: tuple[int, ...]
    downsample_factors: tuple[tuple[int, int], ...]
    attn_blocks: tuple[bool, ...]
    dropout: float = 0.0

    @classmethod
    def from_mapping(cls, section: Mapping, name: str) -> "EncoderConfig":
        """Validate one ``model.<name>`` mapping; errors name the offending key."""
        unknown = sorted(set(section) - set(_ENCODER_KEYS))
        if unknown:
            raise ConfigError(f"model.{name} has unknown keys {unknown}; allowed: {list(_ENCODER_KEYS)}")
        missing = [key for key in _REQUIRED_ENCODER_KEYS if key not in section]
        if missing:
            raise ConfigError(f"model.{name} lacks required keys {missing}")

        widths = tuple(int(c) for c in section["block_out_channels"])
        stages = len(widths)
        factors = tuple(_as_stride(f, f"model.{name}.downsample_factors") for f in section["downsample_factors"])
        attn = section.get("attn_blocks")
        attn = (False,) * stages if attn is None else tuple(bool(int(a)) for a in attn)
        for key, values in (("downsample_factors", factors), ("attn_blocks", attn)):
            if len(values) != stages:
                raise ConfigError(
                    f"model.{name}.{key} has {len(values)} entries but block_out_channels has {stages}"
                )
        odd = [c for c in widths if c % GROUPS]
        if odd:
            raise ConfigError(f"model.{name}.block_out_channels {list(odd)} are not multiples of {GROUPS} (GroupNorm)")
        return cls(int(section["in_channels"]), widths, factors, attn, float(section.get("dropout", 0.0)))


def _as_stride(factor: int | Sequence[int], where: str) -> tuple[int, int]:
    if isinstance(factor, int):
        return (factor, factor)
    factor = tuple(int(f) for f in factor)
    if len(factor) != 2:
        raise ConfigError(f"{where}: expected an int or [height, width], got {list(factor)}")
    return factor


class DownsampleResnetBlock(nn.Module):
    """Pre-activation residual block (GN, SiLU, 3x3 conv, twice), then an optional strided 3x3 conv.

    The strided conv has no padding of its own; the map is zero-padded first: a strided axis
    gets one zero row/column at its end (bottom/right), an axis of stride 1 gets one on each
    side so its size is kept. For stride ``s`` an axis of size ``n`` becomes ``floor((n - 2)/s) + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int], dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, in_channels, eps=NORM_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(GROUPS, out_channels, eps=NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

        if stride == (1, 1):
            self.downsample_conv = None
            self.pad = (0, 0, 0, 0)
        else:
            self.downsample_conv = nn.Conv2d(out_channels, out_channels, 3, stride=stride)
            stride_h, stride_w = stride
            # F.pad order: (left, right, top, bottom)
            self.pad = ((1, 1) if stride_w == 1 else (0, 1)) + ((1, 1) if stride_h == 1 else (0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.downsample_conv is not None:
            h = self.downsample_conv(F.pad(h, self.pad))
        return h


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``[b, L, dim]`` with biased q/k/v, via ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        # A list, so that the keys read ``to_out.0`` as in the official checkpoints.
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [b, L, heads*d] -> [b, heads, L, d]: head i owns channels i*d .. (i+1)*d - 1.
        q, k, v = (self._split_heads(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        for layer in self.to_out:
            out = layer(out)
        return out

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class AttentionBlock2D(nn.Module):
    """Residual transformer layer over the ``h*w`` positions of a feature map (shape kept).

    GN and a 1x1 conv make tokens; pre-LayerNorm self-attention and GEGLU feed-forward, each
    residual; a 1x1 conv back, added to the block input.
    """

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        # Registration order fixes the state-dict order of the official checkpoints.
        self.norm1 = nn.GroupNorm(GROUPS, channels, eps=NORM_EPS)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, dropout=dropout, activation_fn="geglu")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1)
        self.attn = SelfAttention(channels, ATTENTION_HEADS, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        tokens = self.conv_in(self.norm1(x)).flatten(2).transpose(1, 2)  # [b, h*w, c]
        tokens = tokens + self.attn(self.norm2(tokens))
        tokens = tokens + self.ff(self.norm3(tokens))
        h = tokens.transpose(1, 2).unflatten(2, (height, width))
        return x + self.conv_out(h)


class SyncNetEncoder(nn.Module):
    """3x3 ``conv_in``, one :class:`DownsampleResnetBlock` per stage (each optionally followed by an
    :class:`AttentionBlock2D`, in the same ``down_blocks`` list), then GN and ReLU.

    The output is non-negative, ``[b, block_out_channels[-1], h', w']``; the official
    configs reach ``h' = w' = 1``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.gradient_checkpointing = False
        widths = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, width in enumerate(widths):
            previous = widths[max(i - 1, 0)]
            blocks.append(DownsampleResnetBlock(previous, width, config.downsample_factors[i], config.dropout))
            if config.attn_blocks[i]:
                blocks.append(AttentionBlock2D(width, config.dropout))
        self.down_blocks = nn.ModuleList(blocks)
        self.norm_out = nn.GroupNorm(GROUPS, widths[-1], eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, in_channels, h, w]`` -> ``[b, C, h', w']``; the input is cast to the weights' dtype."""
        h = self.conv_in(x.to(self.conv_in.weight.dtype))
        for block in self.down_blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h = checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
        return F.relu(self.norm_out(h))


class StableSyncNet(nn.Module):
    """Audio and visual encoders whose L2-normalised outputs are compared by cosine similarity.

    ``config`` is the ``model:`` section (dict or DictConfig) with ``audio_encoder`` and
    ``visual_encoder`` mappings (see :class:`EncoderConfig`); it is kept, as plain data, in
    ``self.config``. Unlike upstream, the constructor leaves torch's default training mode:
    the model has no BatchNorm and every official config has ``dropout: 0.0``, so the mode
    changes nothing numerically, and :meth:`from_checkpoint` returns an eval-mode, frozen model.
    ``gradient_checkpointing`` recomputes each block in backward (for the UNet's sync loss,
    where gradients flow through the frozen SyncNet into the predicted frames).
    """

    def __init__(self, config: Mapping, gradient_checkpointing: bool = False):
        super().__init__()
        if isinstance(config, DictConfig):
            config = to_container(config)
        missing = [name for name in ("audio_encoder", "visual_encoder") if name not in config]
        if missing:
            raise ConfigError(f"SyncNet model config lacks {missing}")
        self.config = {name: copy.deepcopy(dict(config[name])) for name in ("audio_encoder", "visual_encoder")}
        # Audio first: the official state dicts list its keys first.
        self.audio_encoder = SyncNetEncoder(EncoderConfig.from_mapping(config["audio_encoder"], "audio_encoder"))
        self.visual_encoder = SyncNetEncoder(EncoderConfig.from_mapping(config["visual_encoder"], "visual_encoder"))
        self.set_gradient_checkpointing(gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Trade compute for memory in backward: each encoder block is recomputed instead of stored."""
        self.audio_encoder.gradient_checkpointing = enabled
        self.visual_encoder.gradient_checkpointing = enabled

    def forward(
        self, image_sequences: torch.Tensor, audio_sequences: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[b, frames*c, h, w]`` faces (frame-major channels) and ``[b, 1, 80, t]`` mel windows ->
        ``(vision_embeds, audio_embeds)``, each ``[b, D]`` with unit L2 norm, in the weights' dtype."""
        vision = self.visual_encoder(image_sequences).flatten(1)
        audio = self.audio_encoder(audio_sequences).flatten(1)
        return F.normalize(vision, p=2, dim=1), F.normalize(audio, p=2, dim=1)

    @classmethod
    def from_config_file(cls, path: str | os.PathLike, gradient_checkpointing: bool = False) -> "StableSyncNet":
        """A freshly initialised (training-mode) model from the ``model:`` section of a YAML file."""
        return cls(_load_section(path)["model"], gradient_checkpointing=gradient_checkpointing)

    @classmethod
    def from_checkpoint(
        cls,
        config: str | os.PathLike | Mapping,
        ckpt_path: str | os.PathLike | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        gradient_checkpointing: bool = False,
    ) -> "StableSyncNet":
        """Build from a YAML path (or its mapping, or just its ``model:`` part) and load weights strictly.

        ``ckpt_path`` defaults to the config's ``ckpt.inference_ckpt_path``. The result is a
        judge: ``eval()`` mode with ``requires_grad`` off (gradients still reach the inputs);
        call ``.train().requires_grad_(True)`` to fine-tune it instead.
        Raises :class:`CheckpointError` naming any missing, unexpected or mis-shaped key.
        """
        full = _load_section(config) if isinstance(config, (str, os.PathLike)) else config
        if isinstance(full, DictConfig):
            full = to_container(full)
        model_section = full["model"] if "model" in full else full
        if ckpt_path is None:
            ckpt_path = (full.get("ckpt") or {}).get("inference_ckpt_path") or None
            if ckpt_path is None:
                raise ConfigError("no SyncNet checkpoint given and the config's ckpt.inference_ckpt_path is empty")
        model = cls(model_section, gradient_checkpointing=gradient_checkpointing)
        step = load_checkpoint(model, ckpt_path)
        logger.info("loaded SyncNet weights from %s (global step %d)", os.fspath(ckpt_path), step)
        model.requires_grad_(False)
        return model.eval().to(device=device, dtype=dtype)


def _load_section(path: str | os.PathLike) -> dict:
    return to_container(load_config(path, required=("model",)))

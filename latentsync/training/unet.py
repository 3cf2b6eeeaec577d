"""One U-Net training step's losses, and the frozen networks they need, built from a U-Net config.

Per batch (see :func:`unet_losses`):

1. the frozen VAE encodes target, masked and reference frames (``(z - shift) * scale``);
2. noise (shared over frames or mixed, :mod:`latentsync.training.diffusion`) at uniform DDPM
   timesteps is added; the UNet sees ``[noisy, mask, masked, reference]`` and the audio embeddings
   (a ``run.audio_dropout_prob`` share of samples get the null condition);
3. ``recon``: MSE between predicted and true noise (all that stage 1 uses);
4. with ``run.pixel_space_supervise`` (stage 2): the one-step x0 estimate is decoded by the VAE,
   gradients flowing through the (checkpointed) decoder, and compared with the real frames by
   LPIPS on the lower half (``perceptual``) and TREPA (``trepa``);
5. ``sync``: the frozen StableSyncNet judges the decoded frames (or the predicted latents for a
   latent-space SyncNet) against the clip's mel window.

The weighted sum is the loss. Model files are config entries; a missing one stops the run with
the command that fetches it. Only an empty entry with ``run.allow_random_init_backbones`` (tests and
proofs) gives a randomly initialised backbone, logged loudly; a path that is set must exist.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig

from latentsync.config import load_config, to_container
from latentsync.errors import CheckpointError, ConfigError
from latentsync.losses import cosine_loss, lower_half, noise_prediction_loss, perceptual_loss
from latentsync.models.perceptual import FETCH_HINT, load_lpips_vgg
from latentsync.paths import from_config
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.syncnet_input import load_frozen_vae, syncnet_visual_input, vae_latent_scaling
from latentsync.pipelines.latents import mask_to_latent_size, one_step_sampling, unet_input, vae_scale, vae_unscale
from latentsync.trepa.loss import trepa_loss
from latentsync.trepa.videomae import VideoMAEDimensions, VideoMAEv2, load_videomae, random_videomae
from latentsync.training.diffusion import audio_dropout_draw, drop_audio, training_noise

logger = logging.getLogger(__name__)

LOSS_TERMS = ("recon", "sync", "perceptual", "trepa")


@dataclass(frozen=True)
class StepSettings:
    """What a step computes, from the config's ``run`` section."""

    recon_weight: float = 1.0
    sync_weight: float = 0.0
    perceptual_weight: float = 0.0
    trepa_weight: float = 0.0
    pixel_space_supervise: bool = False
    use_syncnet: bool = False
    use_mixed_noise: bool = False
    mixed_noise_alpha: float = 1.0
    audio_dropout_prob: float = 0.0

    @classmethod
    def from_config(cls, config: DictConfig) -> "StepSettings":
        run = config.run
        use_syncnet = bool(run.use_syncnet) and bool(config.model.add_audio_layer)
        pixel = bool(run.pixel_space_supervise)
        return cls(
            recon_weight=float(run.recon_loss_weight),
            sync_weight=float(run.sync_loss_weight) if use_syncnet else 0.0,
            perceptual_weight=float(run.perceptual_loss_weight) if pixel else 0.0,
            trepa_weight=float(run.trepa_loss_weight) if pixel else 0.0,
            pixel_space_supervise=pixel,
            use_syncnet=use_syncnet,
            use_mixed_noise=bool(run.use_mixed_noise),
            mixed_noise_alpha=float(run.mixed_noise_alpha),
            audio_dropout_prob=float(run.get("audio_dropout_prob", 0.0)),
        )


@dataclass
class FrozenNetworks:
    """The networks a step uses but does not train, with what it needs to know about them."""

    vae: torch.nn.Module
    scheduler: Any  # diffusers DDIMScheduler (add_noise, alphas_cumprod, num_train_timesteps)
    syncnet: StableSyncNet | None = None
    syncnet_data: Mapping | None = None  # the SyncNet config's data section: resolution, lower_half, latent_space
    lpips: torch.nn.Module | None = None
    videomae: VideoMAEv2 | None = None

    @property
    def latent_scaling(self) -> tuple[float, float]:
        return vae_latent_scaling(self.vae)


def build_frozen_networks(
    config: DictConfig, settings: StepSettings, device: torch.device, dtype: torch.dtype = torch.float32
) -> FrozenNetworks:
    """Load VAE and scheduler, and the SyncNet, LPIPS and VideoMAE the configured losses use."""
    from diffusers import DDIMScheduler

    run, ckpt = config.run, config.ckpt
    allow_random = bool(run.get("allow_random_init_backbones", False))
    vae = load_frozen_vae(config.data.vae_path, device, dtype)
    if settings.pixel_space_supervise:
        vae.enable_gradient_checkpointing()  # the decoder runs with gradients; recompute it in backward
    scheduler = DDIMScheduler.from_pretrained(config.data.get("scheduler_config_dir", "configs"))
    if scheduler.config.prediction_type != "epsilon":
        raise ConfigError(f"only epsilon prediction is supported, the scheduler config says {scheduler.config.prediction_type}")
    networks = FrozenNetworks(vae, scheduler)
    if settings.use_syncnet:
        networks.syncnet, networks.syncnet_data = load_sync_judge(
            config.data.syncnet_config_path, ckpt.get("syncnet_ckpt_path") or None, allow_random, device, dtype
        )
        if not networks.syncnet_data.get("latent_space", False) and not settings.pixel_space_supervise:
            raise ConfigError(
                f"{config.data.syncnet_config_path} judges pixels, which a run without run.pixel_space_supervise "
                "never decodes: enable it, or use a latent-space SyncNet config (syncnet_16_latent.yaml)"
            )
    if settings.perceptual_weight:
        networks.lpips = load_lpips_vgg(ckpt.lpips_vgg_path, allow_random_init=allow_random, device=device)
    if settings.trepa_weight:
        dims = VideoMAEDimensions(**to_container(run.trepa_dims)) if run.get("trepa_dims") else VideoMAEDimensions()
        networks.videomae = load_trepa_model(ckpt.videomae_path, dims, allow_random, device, dtype)
    return networks


def load_sync_judge(
    config_path: str, ckpt_path: str | None, allow_random: bool, device: torch.device, dtype: torch.dtype
) -> tuple[StableSyncNet, Mapping]:
    """The frozen StableSyncNet of ``config_path`` (weights from ``ckpt_path`` or its ``ckpt.inference_ckpt_path``)."""
    syncnet_config = load_config(config_path, required=("model", "data.resolution", "data.num_frames"))
    data = to_container(syncnet_config.data)
    path = ckpt_path or syncnet_config.get("ckpt", {}).get("inference_ckpt_path") or ""
    if path and not ckpt_path:  # the SyncNet config's own entry: relative to that config
        path = from_config(path, config_path)
    if path and os.path.isfile(path):
        model = StableSyncNet.from_checkpoint(syncnet_config, path, device=device, dtype=dtype, gradient_checkpointing=True)
        return model, data
    if path or not allow_random:  # a path that is set but wrong is a mistake, random backbones or not
        raise CheckpointError(f"SyncNet weights not found: {path or '(no path in ' + config_path + ')'}; {FETCH_HINT}")
    _warn_random("SyncNet", path)
    model = StableSyncNet(syncnet_config.model, gradient_checkpointing=True).requires_grad_(False).eval()
    return model.to(device=device, dtype=dtype), data


def load_trepa_model(
    path: str, dims: VideoMAEDimensions, allow_random: bool, device: torch.device, dtype: torch.dtype
) -> VideoMAEv2:
    """The frozen VideoMAE-v2 of TREPA, with activation checkpointing (it runs with gradients)."""
    if path and os.path.isfile(path):
        return load_videomae(path, dims, device=device, dtype=dtype, gradient_checkpointing=True)
    if path or not allow_random:
        raise CheckpointError(f"VideoMAE-v2 weights not found: {path or '(no path configured)'}; {FETCH_HINT}")
    _warn_random("VideoMAE-v2 (TREPA)", path)
    return random_videomae(dims, device=device, dtype=dtype, gradient_checkpointing=True)


def _warn_random(what: str, path: str) -> None:
    logger.warning(
        "!!! %s is RANDOMLY INITIALISED (run.allow_random_init_backbones; weights file: %s): "
        "its loss term is not the real one. Use this only for tests and proofs. !!!", what, path or "none configured",
    )


# --------------------------------------------------------------------------- the step


def encode_frames(
    vae: torch.nn.Module, frames: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(b, f, 3, H, W)`` pixels to scaled latents ``(b, 4, f, h, w)`` (a sample of the posterior, no gradient)."""
    scaling, shift = vae_latent_scaling(vae)
    dtype = next(vae.parameters()).dtype
    with torch.no_grad():
        latents = vae.encode(frames.flatten(0, 1).to(dtype)).latent_dist.sample(generator)
    return rearrange(vae_scale(latents.float(), scaling, shift), "(b f) c h w -> b c f h w", f=frames.shape[1])


def decode_latents(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(b, 4, f, h, w)`` to pixels ``(b*f, 3, H, W)``, with gradients (checkpointed decoder)."""
    scaling, shift = vae_latent_scaling(vae)
    flat = rearrange(vae_unscale(latents, scaling, shift), "b c f h w -> (b f) c h w")
    return vae.decode(flat.to(next(vae.parameters()).dtype)).sample


def sync_judge_input(
    pixels: torch.Tensor | None, latents: torch.Tensor, num_frames: int, syncnet_data: Mapping
) -> torch.Tensor:
    """What the SyncNet sees of the prediction: pixels (resized to its resolution) or latents, lower half when configured."""
    if syncnet_data.get("latent_space", False) or pixels is None:
        frames = rearrange(latents, "b c f h w -> b f c h w")
    else:
        size = syncnet_data["resolution"]
        if pixels.shape[-1] != size or pixels.shape[-2] != size:
            pixels = F.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
        frames = rearrange(pixels, "(b f) c h w -> b f c h w", f=num_frames)
    if syncnet_data.get("lower_half", False):
        frames = lower_half(frames)
    return syncnet_visual_input(frames, lower_half=False)


def unet_losses(
    unet: torch.nn.Module,
    networks: FrozenNetworks,
    batch: Mapping[str, torch.Tensor],
    settings: StepSettings,
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss and its unweighted terms for one batch of :class:`~latentsync.data.unet_dataset.UNetDataset`.

    ``generator`` (on ``device``) fixes every random draw (validation); None uses the global
    generators, whose state the training checkpoints save. ``autocast()`` wraps each forward pass.
    """
    gt = batch["gt_pixel_values"].to(device)
    batch_size, num_frames = gt.shape[:2]
    gt_latents = encode_frames(networks.vae, gt, generator)
    masked_latents = encode_frames(networks.vae, batch["masked_pixel_values"].to(device), generator)
    ref_latents = encode_frames(networks.vae, batch["ref_pixel_values"].to(device), generator)
    masks = mask_to_latent_size(batch["masks"].to(device).flatten(0, 1), tuple(gt_latents.shape[-2:]))
    masks = rearrange(masks, "(b f) c h w -> b c f h w", f=num_frames)

    noise = training_noise(gt_latents, mixed=settings.use_mixed_noise, alpha=settings.mixed_noise_alpha, generator=generator)
    timesteps = torch.randint(
        0, networks.scheduler.config.num_train_timesteps, (batch_size,), device=device, generator=generator
    )
    noisy = networks.scheduler.add_noise(gt_latents, noise, timesteps)
    audio = batch.get("audio_embeds")
    if audio is not None:
        audio = audio.to(device)
        if settings.audio_dropout_prob > 0:
            cpu_generator = None if generator is None else torch.Generator().manual_seed(generator.initial_seed())
            audio = drop_audio(audio, audio_dropout_draw(batch_size, settings.audio_dropout_prob, cpu_generator))

    with autocast():
        pred_noise = unet(unet_input(noisy, masks, masked_latents, ref_latents), timesteps, encoder_hidden_states=audio).sample
    pred_noise = pred_noise.float()
    terms: dict[str, torch.Tensor] = {"recon": noise_prediction_loss(pred_noise, noise).mean()}

    pred_latents = pred_pixels = None
    if settings.pixel_space_supervise or settings.use_syncnet:
        pred_latents = one_step_sampling(networks.scheduler.alphas_cumprod, noisy, pred_noise, timesteps)
    if settings.pixel_space_supervise:
        with autocast():
            pred_pixels = decode_latents(networks.vae, pred_latents)
        gt_pixels = gt.flatten(0, 1)
        if networks.lpips is not None:
            terms["perceptual"] = perceptual_loss(networks.lpips, pred_pixels, gt_pixels).mean()
        if networks.videomae is not None:
            to_video = "(b f) c h w -> b c f h w"
            with autocast():
                terms["trepa"] = trepa_loss(
                    networks.videomae, rearrange(pred_pixels, to_video, f=num_frames), rearrange(gt_pixels, to_video, f=num_frames)
                ).mean()
    if networks.syncnet is not None and settings.use_syncnet:
        visual = sync_judge_input(pred_pixels, pred_latents, num_frames, networks.syncnet_data)
        with autocast():
            vision_embeds, audio_embeds = networks.syncnet(visual, batch["mel"].to(device))
        terms["sync"] = cosine_loss(vision_embeds, audio_embeds, torch.ones(batch_size, 1, device=device)).mean()

    weights = {
        "recon": settings.recon_weight, "sync": settings.sync_weight,
        "perceptual": settings.perceptual_weight, "trepa": settings.trepa_weight,
    }
    loss = sum(weights[name] * value for name, value in terms.items())
    return loss, terms

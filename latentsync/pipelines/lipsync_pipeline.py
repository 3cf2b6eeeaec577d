"""LatentSync's diffusion pipeline on tensors: one clip of aligned faces + its audio tokens -> lip-synced faces.

``LipsyncPipeline.__call__`` follows diffusers' numbered steps: check, encode the conditioning
(mask, masked face and reference latents), make the sampler and its timesteps, prepare the
latents, run the denoising loop, decode and paste the untouched surroundings back. The arithmetic
lives in :mod:`latentsync.pipelines.latents` and :mod:`latentsync.pipelines.guidance`.

The pipeline holds the networks (VAE, Whisper audio encoder, UNet) and the noise schedule, and
nothing of any one call: the sampler, its step count, guidance, deep caching and DDIM's eta come
in each call as a :class:`~latentsync.pipelines.sampling.Sampling` value, with the call's
generator; a fresh sampler is made per clip from the shared schedule. So one loaded pipeline serves
several jobs with different settings, in turn or from several threads at once. Files, threads and
working folders are the video runner's (:mod:`latentsync.pipelines.video_runner`): it decodes,
finds and aligns the faces, streams them here clip by clip, restores, encodes and muxes.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from latentsync.face.detection import FaceDetector
from latentsync.face.mask import prepare_masks_and_masked_images
from latentsync.models.unet import UNet3DConditionModel
from latentsync.paths import DEFAULT_MASK_PATH
from latentsync.pipelines import guidance
from latentsync.pipelines.deep_cache import DeepFeatureCache
from latentsync.pipelines.frame_plan import VIDEO_FPS
from latentsync.pipelines.latents import (
    frame_noise, mask_to_latent_size, paste_surroundings, shared_initial_noise, unet_input, vae_scale, vae_unscale,
)
from latentsync.pipelines.sampling import Sampling, scheduler_class

@dataclass(frozen=True)
class ClipConditioning:
    """UNet inputs that stay fixed during one clip's denoising, already doubled for CFG.

    ``mask`` (b, 1, f, h, w), ``masked_image_latents`` and ``reference_latents`` (b, 4, f, h, w);
    ``pixel_values`` and ``masks`` (f, 3|1, r, r) are the pixel-space face and keep-mask, used to
    paste the untouched surroundings back after decoding.
    """

    mask: torch.Tensor
    masked_image_latents: torch.Tensor
    reference_latents: torch.Tensor
    pixel_values: torch.Tensor
    masks: torch.Tensor


def _frames_to_video(x: torch.Tensor) -> torch.Tensor:
    """(f, c, h, w) per-frame tensors to the UNet's (1, c, f, h, w) clip layout."""
    return x.permute(1, 0, 2, 3).unsqueeze(0)


def _video_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) to (b*f, c, h, w), frame-major within each batch entry."""
    return x.permute(0, 2, 1, 3, 4).flatten(0, 1)


class LipsyncPipeline(DiffusionPipeline):
    """Diffusion sampling of mouth-region latents conditioned on Whisper audio features.

    Components: ``vae`` (diffusers ``AutoencoderKL``), ``audio_encoder``
    (:class:`~latentsync.whisper.audio2feature.Audio2Feature`), ``unet``
    (:class:`~latentsync.models.unet.UNet3DConditionModel`), ``scheduler`` (the noise schedule,
    a diffusers ``DDIMScheduler``; each call samples with a fresh scheduler of its own kind built
    from its config). Device and dtype follow the modules: ``pipeline.to(device, dtype)`` moves them
    all, the audio encoder included. Build one from checkpoint files with
    :func:`latentsync.pipelines.loading.load_pipeline`, which also sets the UNet config's clip
    length, face resolution and mask (:meth:`set_defaults`) and attaches a ``face_detector`` for
    the video runner.
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        audio_encoder,
        unet: UNet3DConditionModel,
        scheduler: SchedulerMixin,
    ) -> None:
        super().__init__()
        self.register_modules(vae=vae, audio_encoder=audio_encoder, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.face_detector: FaceDetector | None = None
        self.num_frames = 16
        self.resolution = 256
        self.mask_image_path: str | os.PathLike = DEFAULT_MASK_PATH

    def set_defaults(
        self, *, num_frames: int, resolution: int, mask_image_path: str | os.PathLike = DEFAULT_MASK_PATH
    ) -> None:
        """The UNet config's clip length, face resolution and mask (fixed by the weights, set once when loading)."""
        self.num_frames, self.resolution, self.mask_image_path = num_frames, resolution, mask_image_path

    def to(self, *args, **kwargs) -> "LipsyncPipeline":
        """diffusers' ``to`` (device and/or dtype of the modules), then the audio encoder follows the UNet's device."""
        super().to(*args, **kwargs)
        if self.audio_encoder is not None:
            self.audio_encoder.to(self.unet.device)
        return self

    def make_generator(self, seed: int) -> torch.Generator:
        """A seeded generator for a call: on the UNet's device (the CPU for MPS, which has no generator)."""
        device = self.unet.device if self.unet.device.type != "mps" else torch.device("cpu")
        return torch.Generator(device=device).manual_seed(seed)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ------------------------------------------------------------------ the sampler

    def make_sampler(self, sampling: Sampling) -> SchedulerMixin:
        """A fresh scheduler of ``sampling.scheduler``'s kind on the pipeline's noise schedule, its timesteps set.

        Made per clip: a multistep solver (DPM-Solver++) starts each clip with an empty history, and
        no call sees another's state.
        """
        kind = scheduler_class(sampling.scheduler)
        config = self.scheduler.config
        most = config.num_train_timesteps - config.steps_offset
        if not 1 <= sampling.inference_steps <= most:
            raise ValueError(f"inference_steps must be between 1 and {most}, got {sampling.inference_steps}")
        scheduler = kind.from_config(config)
        scheduler.set_timesteps(sampling.inference_steps, device=self.unet.device)
        return scheduler

    def initial_noise(self, resolution: int, generator: torch.Generator | None) -> torch.Tensor:
        """One frame of noise (1, C, 1, r/8, r/8), shared by every frame of the video."""
        side = resolution // self.vae_scale_factor
        return shared_initial_noise(
            1,
            self.vae.config.latent_channels,
            (side, side),
            dtype=self.dtype,
            device=self.unet.device,
            generator=generator,
            init_noise_sigma=self.scheduler.init_noise_sigma,
        )

    # ------------------------------------------------------------------ latents

    def encode_posterior(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(f, 3, r, r) pixels in [-1, 1] to the VAE posterior's parameters (f, 2C, r/8, r/8): mean, then log-variance.

        They can be kept (a streaming avatar's cache) and sampled later by :meth:`sample_latents`: the
        draw is then exactly the one encoding again would give, for the same generator state.
        """
        pixel_values = pixel_values.to(device=self.vae.device, dtype=self.vae.dtype)
        return self.vae.encode(pixel_values).latent_dist.parameters

    def sample_latents(self, posterior: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A draw from posterior parameters (f, 2C, h, w) as (1, C, f, h, w) scaled latents, by diffusers' own sampler."""
        latents = DiagonalGaussianDistribution(posterior).sample(generator=generator)
        config = self.vae.config
        latents = vae_scale(latents, config.scaling_factor, config.shift_factor or 0.0)
        return _frames_to_video(latents).to(self.dtype)

    def encode_latents(self, pixel_values: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(f, 3, r, r) pixels in [-1, 1] to (1, C, f, r/8, r/8) scaled latents (a posterior sample)."""
        return self.sample_latents(self.encode_posterior(pixel_values), generator)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, C, f, h, w) scaled latents to (f, 3, 8h, 8w) pixels, roughly in [-1, 1]."""
        config = self.vae.config
        latents = vae_unscale(latents, config.scaling_factor, config.shift_factor or 0.0)
        return self.vae.decode(_video_to_frames(latents).to(self.vae.dtype)).sample

    def prepare_conditioning(
        self,
        faces: np.ndarray | torch.Tensor,
        mask: torch.Tensor,
        guidance_scale: float,
        generator: torch.Generator | None,
    ) -> ClipConditioning:
        """Mask, masked-face and reference latents of a clip of aligned faces (f, r, r, 3) uint8."""
        pixel_values, masked_pixel_values, masks = prepare_masks_and_masked_images(faces, mask)
        return self.conditioning_from_posteriors(
            pixel_values, masks, self.encode_posterior(masked_pixel_values), self.encode_posterior(pixel_values),
            guidance_scale, generator,
        )

    def conditioning_from_posteriors(
        self,
        pixel_values: torch.Tensor,
        masks: torch.Tensor,
        masked_posterior: torch.Tensor,
        reference_posterior: torch.Tensor,
        guidance_scale: float,
        generator: torch.Generator | None,
    ) -> ClipConditioning:
        """A clip's conditioning from its pixels (f, 3, r, r), keep-masks (f, 1, r, r) and the VAE posterior
        parameters of its masked and whole faces (:meth:`encode_posterior`, e.g. cached once per avatar)."""
        resolution = pixel_values.shape[-1]
        if resolution % self.vae_scale_factor:
            raise ValueError(f"resolution {resolution} is not a multiple of {self.vae_scale_factor}")
        latent_hw = (resolution // self.vae_scale_factor,) * 2
        mask_latents = _frames_to_video(mask_to_latent_size(masks, latent_hw))
        # Same order as the reference, so draws from ``generator`` line up: masked face, then reference.
        masked_latents = self.sample_latents(masked_posterior, generator)
        reference_latents = self.sample_latents(reference_posterior, generator)
        device = masked_latents.device
        return ClipConditioning(
            mask=guidance.double_for_guidance(mask_latents.to(device=device, dtype=self.dtype), guidance_scale),
            masked_image_latents=guidance.double_for_guidance(masked_latents, guidance_scale),
            reference_latents=guidance.double_for_guidance(reference_latents, guidance_scale),
            pixel_values=pixel_values,
            masks=masks,
        )

    # ------------------------------------------------------------------ denoising

    def denoise(
        self,
        latents: torch.Tensor,
        conditioning: ClipConditioning,
        audio_embeds: torch.Tensor | None,
        sampling: Sampling,
        generator: torch.Generator | None = None,
        unet: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """Run a fresh sampler's timesteps on one clip's latents (1, C, f, h, w).

        ``audio_embeds`` (f, 50, D) are the clip's audio tokens; with CFG the null condition is
        all-zero audio. ``sampling.eta`` (DDIM's noise) is refused by samplers without one, unless 0.
        ``unet``: see :meth:`generate`.
        """
        scheduler = self.make_sampler(sampling)
        step_options = _step_options(scheduler, sampling.eta, generator)
        scale = sampling.guidance_scale
        if audio_embeds is not None and self.unet.config.add_audio_layer:
            audio_embeds = guidance.with_null_audio(audio_embeds.to(latents.device, self.dtype), scale)
        else:
            audio_embeds = None
        model = self.unet if unet is None else unet
        cache = DeepFeatureCache(self.unet, sampling.deepcache_interval) if sampling.enable_deepcache else None
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(guidance.double_for_guidance(latents, scale), t)
            x = unet_input(x, conditioning.mask, conditioning.masked_image_latents, conditioning.reference_latents)
            if cache is None:
                noise_pred = model(x, t, encoder_hidden_states=audio_embeds).sample
            else:
                with cache.step():
                    noise_pred = model(x, t, encoder_hidden_states=audio_embeds, deep_cache=cache).sample
            noise_pred = guidance.split_and_guide(noise_pred, scale)
            latents = scheduler.step(noise_pred, t, latents, **step_options).prev_sample
        return latents

    # ------------------------------------------------------------------ audio

    def audio_tokens(self, features: torch.Tensor, frames: Sequence[int]) -> torch.Tensor:
        """Whisper tokens (len(frames), 10*layers, D) of the given output frames, from 50 Hz features.

        Built per clip rather than for the whole audio, so their memory does not grow with its length.
        """
        return torch.stack([self.audio_encoder.get_sliced_feature(features, k, fps=VIDEO_FPS)[0] for k in frames])

    # ------------------------------------------------------------------ one clip

    @torch.no_grad()
    def __call__(
        self,
        faces: np.ndarray | torch.Tensor,
        audio_embeds: torch.Tensor,
        noise: torch.Tensor,
        mask: torch.Tensor,
        sampling: Sampling,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Aligned faces (f, r, r, 3) uint8 + audio tokens (f, 50, D) -> synced faces (f, 3, r, r) in [-1, 1].

        ``noise`` is the shared (1, C, 1, r/8, r/8) initial draw (:meth:`initial_noise`), ``mask`` the
        (1, r, r) keep-mask (:func:`~latentsync.face.mask.load_fixed_mask`); only the mouth region
        (mask 0) comes from the model, the rest is the input face. ``generator`` draws the VAE's
        posterior samples; pass the same one, clip after clip, for a whole video.
        """
        # 1. Check the clip.
        if len(faces) != len(audio_embeds):
            raise ValueError(f"{len(faces)} faces but {len(audio_embeds)} frames of audio tokens")
        # 2. Encode the conditioning: mask, masked face and reference latents (doubled for CFG).
        conditioning = self.prepare_conditioning(faces, mask, sampling.guidance_scale, generator)
        # 3-5. Latents, denoising, decoding.
        return self.generate(conditioning, audio_embeds, noise, sampling, generator)

    @torch.no_grad()
    def generate(
        self,
        conditioning: ClipConditioning,
        audio_embeds: torch.Tensor | None,
        noise: torch.Tensor,
        sampling: Sampling,
        generator: torch.Generator | None = None,
        unet: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """Steps 3-5 of a call: denoise a clip's prepared conditioning, decode it and paste the surroundings back.

        ``unet`` is a stand-in for ``self.unet`` with its weights (a compiled one); None: the UNet itself.
        """
        # 3. Latents: the shared noise frame, repeated over the clip.
        latents = frame_noise(noise, conditioning.pixel_values.shape[0]).to(self.dtype)
        # 4. Denoising loop, with a fresh sampler and its timesteps.
        latents = self.denoise(latents, conditioning, audio_embeds, sampling, generator, unet)
        # 5. Decode, and keep the input outside the mouth.
        decoded = self.decode_latents(latents).float()
        pixel_values = conditioning.pixel_values.to(decoded.device)
        return paste_surroundings(decoded, pixel_values, conditioning.masks.to(decoded.device))


def _step_options(scheduler: SchedulerMixin, eta: float, generator: torch.Generator | None) -> dict:
    """The keyword arguments of ``scheduler.step`` this scheduler takes: ``eta`` only for DDIM-like ones."""
    accepted = inspect.signature(scheduler.step).parameters
    if "eta" not in accepted and eta:
        raise ValueError(f"{type(scheduler).__name__} has no eta; eta={eta} needs the DDIM scheduler")
    options = {"eta": eta} if "eta" in accepted else {}
    if "generator" in accepted:
        options["generator"] = generator
    return options

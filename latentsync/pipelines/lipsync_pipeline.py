"""Video + audio in, lip-synced video out: LatentSync's inference as a diffusers pipeline.

``LipsyncPipeline.__call__`` is a list of calls into one stage each: audio features
(``latentsync.whisper``), face tracking, alignment and restore (``face.alignment``), masks
(``face.mask``), latents and denoising (here, with the arithmetic in ``pipelines.latents`` and
``pipelines.guidance``), and decode/encode/mux (``latentsync.media``).

Everything after face detection streams one clip of ``num_frames`` output frames at a time:
read, align, encode, denoise, decode, restore, write. Peak memory therefore does not depend on
the video's length, and because the initial noise is one frame of noise shared by every frame
of the video, a clip-wise run gives exactly what a run over all frames at once gives. Reading
and aligning the next clip, and restoring and writing the previous one, run in threads beside
the denoising of the current clip, and the face detection pass runs ahead of the whole sync
pass in a thread of its own (:mod:`latentsync.pipelines.overlap`); the frames are the same.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin

from latentsync.errors import NoFaceError
from latentsync.face.alignment import AlignedFrame, FaceAligner, FaceStageOptions
from latentsync.face.detection import FaceDetection, FaceDetector
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import FAST_ENCODING, VideoWriter
from latentsync.models.unet import UNet3DConditionModel
from latentsync.paths import DEFAULT_MASK_PATH
from latentsync.pipelines import guidance
from latentsync.pipelines.deep_cache import DeepFeatureCache
from latentsync.pipelines.frame_plan import FrameStore, clip_bounds, output_frame_count, padded_positions, pingpong_index
from latentsync.pipelines.latents import (
    frame_noise, mask_to_latent_size, paste_surroundings, shared_initial_noise, unet_input, vae_scale, vae_unscale,
)
from latentsync.pipelines.overlap import Backlog, Drain, Prefetch
from latentsync.pipelines.progress import ProgressHook, TqdmProgress
from latentsync.utils.files import TEMP_PREFIX, WORK_PREFIX, check_output_path, owned_prefix, remove_stale
from latentsync.utils.memory import limit_malloc_arenas

logger = logging.getLogger(__name__)

VIDEO_FPS = 25  # the rate the models were trained at; every input is resampled to it

# Before any model is built or thread started: else a long run's resident memory creeps up with its length.
limit_malloc_arenas()


@dataclass(frozen=True)
class SyncReport:
    """What a run produced; counts are output frames."""

    output_path: str
    frames: int  # output frames (= audio duration x fps, rounded up)
    synced_frames: int  # frames whose mouth was generated
    frames_without_face: int  # frames copied through unchanged
    source_frames: int  # input frames used (at 25 fps), before ping-pong looping


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
    (:class:`~latentsync.models.unet.UNet3DConditionModel`), ``scheduler`` (a diffusers
    epsilon-prediction scheduler: ``DDIMScheduler``, or ``DPMSolverMultistepScheduler`` for fewer steps).
    Device and dtype follow the modules: ``pipeline.to(device, dtype)`` moves them all, the audio
    encoder included. Build one from checkpoint files with
    :func:`latentsync.pipelines.loading.load_pipeline`, which also sets the call defaults
    (``face_detector``, ``num_frames``, ``resolution``, ``mask_image_path``).
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
        self.deep_cache_interval: int | None = None
        self.face_detector: FaceDetector | None = None
        self.num_frames = 16
        self.resolution = 256
        self.mask_image_path: str | os.PathLike = DEFAULT_MASK_PATH
        self.video_encoding = FAST_ENCODING  # libx264 settings of the output (media.writer.ARCHIVAL_ENCODING: slow, small)
        self.face_options = FaceStageOptions()  # how faces are tracked, warped and restored (fast paths by default)

    def set_defaults(
        self, *, num_frames: int, resolution: int, mask_image_path: str | os.PathLike = DEFAULT_MASK_PATH
    ) -> None:
        """The UNet config's clip length, face resolution and mask, used when a call does not name them."""
        self.num_frames, self.resolution, self.mask_image_path = num_frames, resolution, mask_image_path

    def to(self, *args, **kwargs) -> "LipsyncPipeline":
        """diffusers' ``to`` (device and/or dtype of the modules), then the audio encoder follows the UNet's device."""
        super().to(*args, **kwargs)
        if self.audio_encoder is not None:
            self.audio_encoder.to(self.unet.device)
        return self

    def make_generator(self, seed: int) -> torch.Generator:
        """A seeded generator for ``__call__``: on the UNet's device (the CPU for MPS, which has no generator)."""
        device = self.unet.device if self.unet.device.type != "mps" else torch.device("cpu")
        return torch.Generator(device=device).manual_seed(seed)

    # ------------------------------------------------------------------ options

    def enable_deepcache(self, interval: int = 3) -> None:
        """Run the deep UNet blocks only every ``interval``-th step of a clip and reuse their
        features in between (see :mod:`latentsync.pipelines.deep_cache`). Faster, slightly different."""
        if interval < 1:
            raise ValueError(f"deep-cache interval must be >= 1, got {interval}")
        self.deep_cache_interval = interval

    def disable_deepcache(self) -> None:
        self.deep_cache_interval = None

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ------------------------------------------------------------------ latents stage

    def encode_latents(self, pixel_values: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(f, 3, r, r) pixels in [-1, 1] to (1, C, f, r/8, r/8) scaled latents (a posterior sample)."""
        pixel_values = pixel_values.to(device=self.vae.device, dtype=self.vae.dtype)
        latents = self.vae.encode(pixel_values).latent_dist.sample(generator=generator)
        config = self.vae.config
        latents = vae_scale(latents, config.scaling_factor, config.shift_factor or 0.0)
        return _frames_to_video(latents).to(self.dtype)

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
        resolution = pixel_values.shape[-1]
        if resolution % self.vae_scale_factor:
            raise ValueError(f"resolution {resolution} is not a multiple of {self.vae_scale_factor}")
        latent_hw = (resolution // self.vae_scale_factor,) * 2
        mask_latents = _frames_to_video(mask_to_latent_size(masks, latent_hw))
        # Same order as the reference, so draws from ``generator`` line up: masked face, then reference.
        masked_latents = self.encode_latents(masked_pixel_values, generator)
        reference_latents = self.encode_latents(pixel_values, generator)
        device = masked_latents.device
        return ClipConditioning(
            mask=guidance.double_for_guidance(mask_latents.to(device=device, dtype=self.dtype), guidance_scale),
            masked_image_latents=guidance.double_for_guidance(masked_latents, guidance_scale),
            reference_latents=guidance.double_for_guidance(reference_latents, guidance_scale),
            pixel_values=pixel_values,
            masks=masks,
        )

    # ------------------------------------------------------------------ denoising stage

    def denoise(
        self,
        latents: torch.Tensor,
        conditioning: ClipConditioning,
        audio_embeds: torch.Tensor | None,
        guidance_scale: float,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run the scheduler's timesteps on one clip's latents (1, C, f, h, w).

        ``audio_embeds`` (f, 50, D) are the clip's audio tokens; with CFG the null condition is
        all-zero audio. ``scheduler.set_timesteps`` must have been called; it is called again
        here with the same count, which clears the history of multistep solvers (DPM-Solver++)
        between clips. ``eta`` (DDIM's noise) is refused by schedulers without one, unless 0.
        """
        if self.scheduler.num_inference_steps is None:
            raise RuntimeError("call scheduler.set_timesteps(...) before denoise()")
        self.scheduler.set_timesteps(self.scheduler.num_inference_steps, device=latents.device)
        step_options = self._step_options(eta, generator)
        if audio_embeds is not None and self.unet.config.add_audio_layer:
            audio_embeds = guidance.with_null_audio(audio_embeds.to(latents.device, self.dtype), guidance_scale)
        else:
            audio_embeds = None
        cache = DeepFeatureCache(self.unet, self.deep_cache_interval) if self.deep_cache_interval else None
        for t in self.scheduler.timesteps:
            x = self.scheduler.scale_model_input(guidance.double_for_guidance(latents, guidance_scale), t)
            x = unet_input(
                x, conditioning.mask, conditioning.masked_image_latents, conditioning.reference_latents
            )
            with cache.step() if cache is not None else contextlib.nullcontext():
                noise_pred = self.unet(x, t, encoder_hidden_states=audio_embeds).sample
            noise_pred = guidance.split_and_guide(noise_pred, guidance_scale)
            latents = self.scheduler.step(noise_pred, t, latents, **step_options).prev_sample
        return latents

    def _step_options(self, eta: float, generator: torch.Generator | None) -> dict:
        """The keyword arguments of ``scheduler.step`` this scheduler takes: ``eta`` only for DDIM-like ones."""
        accepted = inspect.signature(self.scheduler.step).parameters
        if "eta" not in accepted and eta:
            raise ValueError(f"{type(self.scheduler).__name__} has no eta; eta={eta} needs the DDIM scheduler")
        options = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            options["generator"] = generator
        return options

    @torch.no_grad()
    def sync_clip(
        self,
        faces: np.ndarray | torch.Tensor,
        audio_embeds: torch.Tensor,
        noise: torch.Tensor,
        mask: torch.Tensor,
        guidance_scale: float = 1.5,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Aligned faces (f, r, r, 3) uint8 + audio tokens (f, 50, D) -> synced faces (f, 3, r, r) in [-1, 1].

        ``noise`` is the shared (1, C, 1, r/8, r/8) initial draw; only the mouth region (mask 0)
        comes from the model, the rest is the input face.
        """
        conditioning = self.prepare_conditioning(faces, mask, guidance_scale, generator)
        latents = frame_noise(noise, conditioning.pixel_values.shape[0]).to(self.dtype)
        latents = self.denoise(latents, conditioning, audio_embeds, guidance_scale, eta, generator)
        decoded = self.decode_latents(latents).float()
        pixel_values = conditioning.pixel_values.to(decoded.device)
        return paste_surroundings(decoded, pixel_values, conditioning.masks.to(decoded.device))

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

    # ------------------------------------------------------------------ faces

    def aligned_frames(
        self,
        reader: VideoReader,
        detections: Iterable[FaceDetection | None],
        used: int,
        num_output_frames: int,
        aligner: FaceAligner,
        spill_dir: str,
    ) -> Iterator[AlignedFrame]:
        """Output frames in order: the first ``used`` frames of the video forward (one detection each),
        then (if the audio is longer) backward, forward...

        Alignment runs once per source frame in forward order (its smoothing is sequential); the
        looped passes replay frames, crops and matrices from a disk spill.
        """
        store = None
        if num_output_frames > used:
            face_shape = (aligner.resolution, aligner.resolution, 3)
            store = FrameStore(os.path.join(spill_dir, "frames.bin"), (reader.height, reader.width, 3), face_shape)
        try:
            for aligned in aligner.align_frames(islice(reader, used), detections):
                if store is not None:
                    store.append(aligned.frame, aligned.face, aligned.matrix)
                yield aligned
            for k in range(used, num_output_frames):
                yield AlignedFrame(*store.read(pingpong_index(k, used)))
        finally:
            if store is not None:
                store.close()

    # ------------------------------------------------------------------ audio

    def audio_tokens(self, features: torch.Tensor, frames: Sequence[int]) -> torch.Tensor:
        """Whisper tokens (len(frames), 10*layers, D) of the given output frames, from 50 Hz features.

        Built per clip rather than for the whole audio, so their memory does not grow with its length.
        """
        return torch.stack([self.audio_encoder.get_sliced_feature(features, k, fps=VIDEO_FPS)[0] for k in frames])

    # ------------------------------------------------------------------ the whole video

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Sample with the UNet in eval mode, restoring its training flag afterwards."""
        was_training = self.unet.training
        self.unet.eval()
        try:
            yield
        finally:
            self.unet.train(was_training)

    @torch.no_grad()
    def __call__(
        self,
        video_path: str | os.PathLike,
        audio_path: str | os.PathLike,
        video_out_path: str | os.PathLike,
        *,
        face_detector: FaceDetector | None = None,
        num_frames: int | None = None,
        resolution: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        mask_image_path: str | os.PathLike | None = None,
        face_index: int | None = None,
        pad_last_clip: bool = True,
        temp_dir: str | os.PathLike | None = None,
        progress: ProgressHook | None = None,
        overlap_stages: bool = True,
    ) -> SyncReport:
        """Lip-sync ``video_path`` to ``audio_path`` and write ``video_out_path`` (H.264 + AAC).

        The output lasts as long as the audio. ``pad_last_clip`` fills a short last clip with its
        own frames played backward so the motion modules see ``num_frames`` frames (upstream runs
        a shorter clip instead; set False to reproduce it). ``temp_dir`` is where a private
        working folder is made (and removed); nothing else is written besides the output.
        ``face_detector``, ``num_frames``, ``resolution`` and ``mask_image_path`` default to the
        pipeline's (see :meth:`set_defaults`). ``progress(stage, done, total)`` is told how far
        each stage is (see :mod:`latentsync.pipelines.progress`); by default tqdm bars show it.
        ``overlap_stages`` False runs face detection, alignment and restore in the calling thread:
        detection over the whole video first, then alignment and restore between clips.
        """
        face_detector = face_detector if face_detector is not None else self.face_detector
        if face_detector is None:
            raise ValueError("no face detector: pass face_detector= or build the pipeline with load_pipeline()")
        num_frames = num_frames or self.num_frames
        resolution = resolution or self.resolution
        mask_image_path = mask_image_path or self.mask_image_path
        bars = TqdmProgress(**getattr(self, "_progress_bar_config", {})) if progress is None else None
        try:
            return self._run(
                video_path, audio_path, video_out_path, face_detector, num_frames, resolution, num_inference_steps,
                guidance_scale, eta, generator, mask_image_path, face_index, pad_last_clip, temp_dir,
                progress or bars, overlap_stages,
            )
        finally:
            if bars is not None:
                bars.close()

    def _run(
        self,
        video_path: str | os.PathLike,
        audio_path: str | os.PathLike,
        video_out_path: str | os.PathLike,
        face_detector: FaceDetector,
        num_frames: int,
        resolution: int,
        num_inference_steps: int,
        guidance_scale: float,
        eta: float,
        generator: torch.Generator | None,
        mask_image_path: str | os.PathLike,
        face_index: int | None,
        pad_last_clip: bool,
        temp_dir: str | os.PathLike | None,
        progress: ProgressHook,
        overlap_stages: bool,
    ) -> SyncReport:
        # 1. Check inputs, and that the output can be written without replacing one of them.
        check_output_path(video_out_path, (video_path, audio_path))
        if resolution % self.vae_scale_factor or resolution <= 0:
            raise ValueError(f"resolution must be a positive multiple of {self.vae_scale_factor}, got {resolution}")
        if num_frames < 1 or num_inference_steps < 1:
            raise ValueError("num_frames and num_inference_steps must be >= 1")
        most_steps = self.scheduler.config.num_train_timesteps - self.scheduler.config.steps_offset
        if num_inference_steps > most_steps:
            raise ValueError(f"num_inference_steps must be <= {most_steps}, got {num_inference_steps}")
        reader = VideoReader(video_path, fps=VIDEO_FPS)  # probes the file: bad videos fail here, early
        waveform = load_audio(audio_path, SAMPLE_RATE)

        # 2. Audio: the sample count decides the output length; 50 Hz Whisper features.
        total = output_frame_count(len(waveform), SAMPLE_RATE, VIDEO_FPS)
        progress("audio", 0, 1)
        features = self.audio_encoder.audio2feat(waveform)
        progress("audio", 1, 1)
        del waveform

        # 3. Sampling set-up: timesteps, the mask, one noise frame for the whole video.
        self.scheduler.set_timesteps(num_inference_steps, device=self.unet.device)
        mask = load_fixed_mask(resolution, mask_image_path)
        noise = self.initial_noise(resolution, generator)

        # 4. Faces: a pass of detection + tracking over the input frames that will be used. It runs
        # ahead of the sync pass, in a thread when the stages overlap (else to its end first); a
        # video without the face fails as soon as the pass ends.
        used = min(len(reader), total)
        counting = _CountingDetector(face_detector)
        aligner = FaceAligner(resolution, counting, face_index, options=self.face_options)
        # The detector sees shrunk frames, scaled while decoding; detections are in full-frame pixels.
        shrunk = islice(reader.frames(self.face_options.detect_max_side), used)
        counted = _counted(shrunk, used, "faces", None if overlap_stages else progress)
        tracked = (d for _, d in aligner.track(counted, frame_size=(reader.width, reader.height)))
        faces = _FacePass(Backlog(tracked, background=overlap_stages, name="faces"), counting, face_index,
                          reader.path, used, progress if overlap_stages else None)

        # 5. Stream clips: align -> encode -> denoise -> decode -> paste -> restore -> write, with
        # alignment (one clip ahead) and restore + write (one clip behind) in their own threads.
        # Leftovers of earlier runs that were killed go first (only those whose process is gone).
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(faces.close)  # last out: stops the detection thread
            faces.check()
            work_parent = os.fspath(temp_dir) if temp_dir is not None else tempfile.gettempdir()
            remove_stale(work_parent, WORK_PREFIX)
            remove_stale(os.path.dirname(os.path.abspath(video_out_path)), TEMP_PREFIX)
            work = tempfile.mkdtemp(prefix=owned_prefix(WORK_PREFIX), dir=work_parent)
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)
            frames = cleanup.enter_context(contextlib.closing(
                self.aligned_frames(reader, faces.detections, used, total, aligner, work)))
            clips = list(clip_bounds(total, num_frames))
            depth = 1 if overlap_stages else 0
            reading = Prefetch(((start, list(islice(frames, stop - start))) for start, stop in clips), depth, "align")
            cleanup.callback(reading.close)  # stops the alignment thread before its generator is closed
            synced = 0
            silent_path = os.path.join(work, "video.mp4")
            progress("denoise", 0, len(clips))
            with self._eval_mode(), VideoWriter(
                silent_path, VIDEO_FPS, reader.width, reader.height, self.video_encoding
            ) as writer:
                writing = Drain(lambda job: _restore_clip(*job, aligner, writer), depth, "restore")
                try:
                    for done, (start, clip) in enumerate(reading, 1):
                        synced_faces = self._sync_faces(
                            clip, features, start, noise, mask, num_frames, guidance_scale, eta, generator,
                            pad_last_clip,
                        )
                        writing.submit((clip, synced_faces))
                        synced += sum(a.face is not None for a in clip)
                        faces.check()
                        progress("denoise", done, len(clips))
                    writing.finish()
                    faces.check(wait=True)
                finally:
                    writing.close()

            # 6. Mux the original audio (the video covers it to within one frame).
            progress("write", 0, 1)
            mux_audio(silent_path, audio_path, video_out_path)
            progress("write", 1, 1)

        report = SyncReport(os.fspath(video_out_path), total, synced, total - synced, used)
        logger.info(
            "wrote %s: %d frames, %d lip-synced, %d without a face copied unchanged",
            report.output_path, report.frames, report.synced_frames, report.frames_without_face,
        )
        return report

    def _sync_faces(
        self,
        clip: list[AlignedFrame],
        features: torch.Tensor,
        start: int,
        noise: torch.Tensor,
        mask: torch.Tensor,
        num_frames: int,
        guidance_scale: float,
        eta: float,
        generator: torch.Generator | None,
        pad_last_clip: bool,
    ) -> torch.Tensor | None:
        """Synced faces (len(clip), 3, r, r) in [-1, 1] on the CPU, or None when no frame of the clip has a face."""
        have = [i for i, a in enumerate(clip) if a.face is not None]
        if not have:
            return None
        # Frames without a face borrow the nearest face of the clip, so the clip stays continuous
        # for the motion modules; their outputs are discarded.
        faces = [clip[i].face if clip[i].face is not None else clip[min(have, key=lambda j: abs(j - i))].face
                 for i in range(len(clip))]
        order = padded_positions(len(clip), num_frames) if pad_last_clip else list(range(len(clip)))
        faces = np.stack([faces[i] for i in order])
        tokens = self.audio_tokens(features, [start + i for i in order])
        return self.sync_clip(faces, tokens, noise, mask, guidance_scale, eta, generator)[: len(clip)].cpu()


class _FacePass:
    """The face detection pass of one run, read while it runs: its progress is reported and its
    outcome checked from the caller's thread (so hooks are only ever called from there)."""

    def __init__(
        self,
        detections: Backlog[FaceDetection | None],
        counting: "_CountingDetector",
        face_index: int | None,
        video_path: str,
        used: int,
        progress: ProgressHook | None,
    ) -> None:
        self.detections = detections
        self.counting = counting
        self.face_index = face_index
        self.video_path = video_path
        self.used = used
        self.progress = progress
        self._checked = False
        if progress is not None:
            progress("faces", 0, used)

    def check(self, wait: bool = False) -> None:
        """Report progress; once the pass has ended (``wait``: wait for that), raise NoFaceError if the
        face was in no frame, else log how many frames have it."""
        if self._checked:
            return
        if not (wait or self.detections.finished):
            if self.progress is not None:
                self.progress("faces", self.detections.count, self.used)
            return
        detections = self.detections.wait()
        self._checked = True
        if self.progress is not None:
            self.progress("faces", self.used, self.used)
        if self.face_index is not None and self.counting.most_faces and not any(d is not None for d in detections):
            raise NoFaceError(
                f"face_index {self.face_index} asks for face {self.face_index + 1} from the left, but at most "
                f"{self.counting.most_faces} face(s) were found in a frame of {self.video_path!r} (faces count from 0)"
            )
        with_face = sum(d is not None for d in detections)
        if with_face == 0:
            raise NoFaceError(
                f"no face found in any of the {self.used} frames of {self.video_path!r}; "
                "use a video where the face is visible and frontal"
            )
        logger.info("face found in %d of %d input frames", with_face, self.used)

    def close(self) -> None:
        self.detections.close()


def _restore_clip(clip: list[AlignedFrame], faces: torch.Tensor | None, aligner: FaceAligner, writer: VideoWriter) -> None:
    """Write a clip's output frames: frames with a face get the synced mouth, others pass through."""
    frames = [aligned.frame for aligned in clip] if faces is None else aligner.restore_clip(clip, faces)
    for frame in frames:
        writer.write(frame)


class _CountingDetector:
    """A face detector that remembers the most faces it saw in one frame (for error messages)."""

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self.most_faces = 0

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        return self.detect_batch([frame], consecutive=False)[0]

    def detect_batch(self, frames, consecutive: bool = True) -> list[list[FaceDetection]]:
        found = self.detector.detect_batch(frames, consecutive)
        self.most_faces = max([self.most_faces, *map(len, found)])
        return found


def _counted(items: Iterator, total: int, stage: str, progress: ProgressHook | None) -> Iterator:
    """``items`` unchanged, telling ``progress`` how many have been taken."""
    if progress is None:
        yield from items
        return
    progress(stage, 0, total)
    done = 0
    for item in items:
        yield item
        done += 1
        progress(stage, done, total)

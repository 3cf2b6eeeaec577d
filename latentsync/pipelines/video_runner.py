"""Video + audio in, lip-synced video out: the whole-video run around the tensor pipeline.

:func:`sync_video` owns everything that is not tensors: probing and decoding the video (resampled
to 25 fps) and the audio, the face detection pass (:mod:`latentsync.pipelines.face_pass`), the
private working folder and the clean-up of what killed runs left, alignment, restore, H.264
encoding and muxing. The diffusion itself is one call of :class:`LipsyncPipeline` per clip.

Everything after face detection streams one clip of ``num_frames`` output frames at a time:
read, align, encode, denoise, decode, restore, write. Peak memory therefore does not depend on
the video's length, and because the initial noise is one frame of noise shared by every frame
of the video, a clip-wise run gives exactly what a run over all frames at once gives. Reading
and aligning the next clip, and restoring and writing the previous one, run in threads beside
the denoising of the current clip, and the face detection pass runs ahead of the whole sync
pass in a thread of its own (:mod:`latentsync.pipelines.overlap`); the frames are the same.

Every option of a run comes in one :class:`~latentsync.settings.InferenceSettings` value; nothing
is set on the pipeline, so runs with different settings may share one loaded pipeline, in turn
or at once from several threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import torch

from latentsync.face.alignment import AlignedFrame, FaceAligner, FaceStageOptions
from latentsync.face.detection import FaceDetection, FaceDetector
from latentsync.face.mask import load_fixed_mask
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import ARCHIVAL_ENCODING, FAST_ENCODING, VideoEncoding, VideoWriter
from latentsync.pipelines.face_pass import CountingDetector, FacePass
from latentsync.pipelines.frame_plan import (
    VIDEO_FPS, FrameStore, clip_bounds, face_donors, output_frame_count, padded_positions, pingpong_index,
)
from latentsync.pipelines.overlap import Drain, Prefetch
from latentsync.pipelines.progress import ProgressHook, TqdmProgress
from latentsync.pipelines.sampling import Sampling
from latentsync.settings import InferenceSettings, draw_seed
from latentsync.utils.files import TEMP_PREFIX, WORK_PREFIX, check_output_path, owned_prefix, remove_stale
from latentsync.utils.memory import limit_malloc_arenas

if TYPE_CHECKING:  # the pipeline module imports diffusers: a job opens without it (see VideoJob)
    from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline

logger = logging.getLogger(__name__)

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
    seed: int | None  # the seed of the noise (None: the caller passed its own generator)


def face_stage_options(settings: InferenceSettings, device: torch.device) -> FaceStageOptions:
    """How a run tracks, warps and restores faces: the settings' detection cadence; batched tensor warps
    on a CUDA device (they beat OpenCV there), OpenCV on the CPU (faster there)."""
    return FaceStageOptions(
        detect_every=settings.detect_every,
        detect_max_side=settings.detect_max_side or None,
        warp_device=device if device.type == "cuda" else None,
    )


def video_encoding(settings: InferenceSettings) -> VideoEncoding:
    """The output's libx264 settings: fast, or slow and small with ``archival``."""
    return ARCHIVAL_ENCODING if settings.archival else FAST_ENCODING


def sync_video(
    pipeline: LipsyncPipeline,
    settings: InferenceSettings,
    *,
    face_detector: FaceDetector | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressHook | None = None,
    overlap_stages: bool = True,
    pad_last_clip: bool = True,
    eta: float = 0.0,
) -> SyncReport:
    """Lip-sync ``settings.video_path`` to ``settings.audio_path`` into ``settings.video_out_path`` (H.264 + AAC).

    The output lasts as long as the audio. ``face_detector`` defaults to the pipeline's;
    ``generator`` to one seeded with ``settings.seed`` (-1: a fresh seed). ``progress(stage, done,
    total)`` is told how far each stage is (:mod:`latentsync.pipelines.progress`); by default tqdm
    bars show it. ``overlap_stages`` False runs face detection, alignment and restore in the calling
    thread: detection over the whole video first, then alignment and restore between clips.
    ``pad_last_clip`` fills a short last clip with its own frames played backward so the motion
    modules see ``num_frames`` frames (upstream runs a shorter clip instead; False reproduces it).
    A private working folder is made under ``settings.temp_dir`` (and removed); nothing else is
    written besides the output. This is :class:`VideoJob` opened and synced at once.
    """
    detector = face_detector if face_detector is not None else pipeline.face_detector
    bars = TqdmProgress(**getattr(pipeline, "_progress_bar_config", {})) if progress is None else None
    try:
        with VideoJob(settings, detector, progress=progress or bars, overlap_stages=overlap_stages) as job:
            return job.sync(pipeline, generator=generator, pad_last_clip=pad_last_clip, eta=eta)
    finally:
        if bars is not None:
            bars.close()


class VideoJob:
    """One video run in two halves, so its first can go before any network is loaded.

    Opening checks the files, probes the video, decodes the audio and, when the stages overlap,
    starts the face detection pass in its thread: all without the pipeline, so a command line can
    open its job first and load the models while the faces are being found. :meth:`sync` then does
    the rest with a loaded pipeline; :meth:`close` (or leaving the ``with`` block) stops the
    detection thread if the job ends early. One job syncs once.
    """

    def __init__(
        self,
        settings: InferenceSettings,
        face_detector: FaceDetector | None,
        *,
        progress: ProgressHook,
        overlap_stages: bool = True,
    ) -> None:
        if face_detector is None:
            raise ValueError("no face detector: pass face_detector= or build the pipeline with load_pipeline()")
        missing = [name for name in ("video_path", "audio_path", "video_out_path") if getattr(settings, name) is None]
        if missing:
            raise ValueError(f"the settings name no {', '.join(missing)}")
        self.settings = settings
        self.progress = progress
        self.overlap = overlap_stages
        self.detector = CountingDetector(face_detector)
        # 1. Check inputs, and that the output can be written without replacing one of them.
        check_output_path(settings.video_out_path, (settings.video_path, settings.audio_path))
        self.reader = VideoReader(settings.video_path, fps=VIDEO_FPS)  # probes the file: bad videos fail here, early
        self.waveform = load_audio(settings.audio_path, SAMPLE_RATE)
        self.total = output_frame_count(len(self.waveform), SAMPLE_RATE, VIDEO_FPS)  # the audio decides the length
        self.used = min(len(self.reader), self.total)  # input frames used
        # The face pass (see sync, step 4) starts now when it runs in a thread; tracking does not depend on
        # the crop size or the device, only on the detection settings.
        self.faces = self._face_pass() if overlap_stages else None

    def _face_pass(self) -> FacePass:
        options = face_stage_options(self.settings, torch.device("cpu"))
        tracking = FaceAligner(detector=self.detector, face_index=self.settings.face_index, options=options)
        return FacePass(self.reader, self.used, tracking, self.detector, self.settings.face_index, self.progress,
                        self.overlap)

    def __enter__(self) -> "VideoJob":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the detection thread, if any, and wait for it."""
        if self.faces is not None:
            self.faces.close()

    @torch.no_grad()
    def sync(
        self,
        pipeline: LipsyncPipeline,
        *,
        generator: torch.Generator | None = None,
        pad_last_clip: bool = True,
        eta: float = 0.0,
    ) -> SyncReport:
        """Lip-sync the opened job with ``pipeline`` (see :func:`sync_video` for the arguments)."""
        settings = self.settings
        seed = None
        if generator is None:
            seed = settings.seed if settings.seed != -1 else draw_seed()
            generator = pipeline.make_generator(seed)
        logger.info("syncing %s to %s (seed %s)", settings.video_path, settings.audio_path,
                    "of the caller's generator" if seed is None else seed)
        run = _SyncPass(self, pipeline, generator, settings.sampling(eta), pad_last_clip)
        was_training = pipeline.unet.training
        if was_training:  # sampling from a model under training (validation): eval mode for the run
            pipeline.unet.eval()
        try:
            return run.run(seed)
        finally:
            if was_training:
                pipeline.unet.train()


class _SyncPass:
    """The half of a job that needs the pipeline: what is derived from both, once, and the run itself."""

    def __init__(
        self, job: VideoJob, pipeline: LipsyncPipeline, generator: torch.Generator, sampling: Sampling,
        pad_last_clip: bool,
    ) -> None:
        self.job = job
        self.pipeline = pipeline
        self.generator = generator
        self.sampling = sampling
        self.pad_last_clip = pad_last_clip
        self.num_frames = pipeline.num_frames
        self.resolution = pipeline.resolution

    def run(self, seed: int | None) -> SyncReport:
        job, pipeline = self.job, self.pipeline
        settings, progress, reader, total, used = job.settings, job.progress, job.reader, job.total, job.used
        if self.resolution % pipeline.vae_scale_factor or self.resolution <= 0:
            raise ValueError(
                f"resolution must be a positive multiple of {pipeline.vae_scale_factor}, got {self.resolution}"
            )
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        pipeline.make_sampler(self.sampling)  # a bad sampler or step count fails here, before any work

        # 2. Audio: 50 Hz Whisper features.
        progress("audio", 0, 1)
        features = pipeline.audio_encoder.audio2feat(
            job.waveform, windows=settings.audio_windows, cache_dir=settings.audio_cache_dir
        )
        progress("audio", 1, 1)
        job.waveform = None

        # 3. Sampling set-up: the mask, one noise frame for the whole video.
        mask = load_fixed_mask(self.resolution, pipeline.mask_image_path)
        noise = pipeline.initial_noise(self.resolution, self.generator)

        # 4. Faces: a pass of detection + tracking over the input frames that will be used. It runs
        # ahead of the sync pass, in a thread when the stages overlap (started when the job opened),
        # else to its end first; a video without the face fails as soon as the pass ends.
        if job.faces is None:
            job.faces = job._face_pass()
        faces = job.faces
        options = face_stage_options(settings, pipeline.unet.device)
        aligner = FaceAligner(self.resolution, face_index=settings.face_index, options=options)

        # 5. Stream clips: align -> encode -> denoise -> decode -> paste -> restore -> write, with
        # alignment (one clip ahead) and restore + write (one clip behind) in their own threads.
        # Leftovers of earlier runs that were killed go first (only those whose process is gone).
        out_path = settings.video_out_path
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(faces.close)  # last out: stops the detection thread
            faces.check()
            work_parent = os.fspath(settings.temp_dir) if settings.temp_dir is not None else tempfile.gettempdir()
            remove_stale(work_parent, WORK_PREFIX)
            remove_stale(os.path.dirname(os.path.abspath(out_path)), TEMP_PREFIX)
            work = tempfile.mkdtemp(prefix=owned_prefix(WORK_PREFIX), dir=work_parent)
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)
            frames = cleanup.enter_context(contextlib.closing(
                _aligned_frames(reader, faces.detections, used, total, aligner, work)))
            clips = clip_bounds(total, self.num_frames)
            depth = 1 if job.overlap else 0
            reading = Prefetch(((start, list(islice(frames, stop - start))) for start, stop in clips), depth, "align")
            cleanup.callback(reading.close)  # stops the alignment thread before its generator is closed
            synced = 0
            silent_path = os.path.join(work, "video.mp4")
            progress("denoise", 0, len(clips))
            with VideoWriter(silent_path, VIDEO_FPS, reader.width, reader.height, video_encoding(settings)) as writer:
                writing = Drain(lambda job: _restore_clip(*job, aligner, writer), depth, "restore")
                try:
                    for done, (start, clip) in enumerate(reading, 1):
                        writing.submit((clip, self._sync_faces(clip, features, start, noise, mask)))
                        synced += sum(a.face is not None for a in clip)
                        faces.check()
                        progress("denoise", done, len(clips))
                    writing.finish()
                    faces.check(wait=True)
                finally:
                    writing.close()

            # 6. Mux the original audio (the video covers it to within one frame).
            progress("write", 0, 1)
            mux_audio(silent_path, settings.audio_path, out_path)
            progress("write", 1, 1)

        report = SyncReport(os.fspath(out_path), total, synced, total - synced, used, seed)
        logger.info(
            "wrote %s: %d frames, %d lip-synced, %d without a face copied unchanged",
            report.output_path, report.frames, report.synced_frames, report.frames_without_face,
        )
        return report

    def _sync_faces(
        self, clip: list[AlignedFrame], features: torch.Tensor, start: int, noise: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor | None:
        """Synced faces (len(clip), 3, r, r) in [-1, 1] on the CPU, or None when no frame of the clip has a face."""
        donors = face_donors([a.face is not None for a in clip])
        if donors is None:
            return None
        faces = [clip[d].face for d in donors]
        order = padded_positions(len(clip), self.num_frames) if self.pad_last_clip else list(range(len(clip)))
        faces = np.stack([faces[i] for i in order])
        tokens = self.pipeline.audio_tokens(features, [start + i for i in order])
        synced = self.pipeline(faces, tokens, noise, mask, self.sampling, self.generator)
        return synced[: len(clip)].cpu()


def _aligned_frames(
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
    looped part replays frames, faces and matrices from a disk spill in ``spill_dir``, so memory
    stays flat however long the audio is.
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


def _restore_clip(clip: list[AlignedFrame], faces: torch.Tensor | None, aligner: FaceAligner, writer: VideoWriter) -> None:
    """Write a clip's output frames: frames with a face get the synced mouth, others pass through."""
    frames = [aligned.frame for aligned in clip] if faces is None else aligner.restore_clip(clip, faces)
    for frame in frames:
        writer.write(frame)

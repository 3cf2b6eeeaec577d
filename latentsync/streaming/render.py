"""What a session does to one committed clip, in three steps that run in three threads (no threads here).

1. :meth:`ClipRenderer.prepare`: the clip's audio tokens (its talking run's Whisper passes) and its
   conditioning, drawn from the avatar's cached VAE posteriors with the session's generator;
2. :meth:`ClipRenderer.generate`: the UNet steps and one VAE decode (:meth:`LipsyncPipeline.generate`);
3. :meth:`ClipRenderer.frames`: the paste-back into the avatar's frames and the blend by each frame's alpha.

Steps 1-3 of a clip do what an offline run does to a clip of the same frames (the same faces, tokens
and draws in the same order, the same restore), so a stream whose every frame talks gives the
offline run's frames exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from latentsync.face.alignment import FaceAligner
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images
from latentsync.pipelines.frame_plan import VIDEO_FPS, face_donors
from latentsync.pipelines.lipsync_pipeline import ClipConditioning, LipsyncPipeline
from latentsync.pipelines.sampling import Sampling
from latentsync.pipelines.video_runner import face_stage_options
from latentsync.settings import InferenceSettings
from latentsync.streaming.avatar import Avatar
from latentsync.streaming.timeline import ClipPlan
from latentsync.whisper.stream_windows import FeatureStream


@dataclass(frozen=True)
class StreamFrame:
    """One output frame of a stream."""

    index: int  # 0, 1, 2, ... from the stream's start
    timestamp: float  # seconds from the stream's start: index / 25
    image: np.ndarray  # (H, W, 3) RGB uint8, the avatar's size
    audio: np.ndarray  # (640,) float32, 16 kHz mono: the audio this frame shows (zeros in a gap)
    synced: bool  # the mouth is generated (alpha > 0 and the frame has the face)
    alpha: float  # share of the generated face: 0 the avatar's own pixels, 1 the generated frame


@dataclass
class PreparedClip:
    """A clip after step 1: its conditioning and tokens (None when nothing is generated: idle, or no face)."""

    plan: ClipPlan
    conditioning: ClipConditioning | None = None
    tokens: torch.Tensor | None = None


class ClipRenderer:
    """The per-clip work of one session on a loaded pipeline and a prepared avatar."""

    def __init__(
        self,
        pipeline: LipsyncPipeline,
        avatar: Avatar,
        settings: InferenceSettings,
        sampling: Sampling,
        generator: torch.Generator,
        read_audio: Callable[[int, int], np.ndarray],
        unet: torch.nn.Module | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.avatar = avatar
        self.sampling = sampling
        self.generator = generator
        self.read_audio = read_audio
        self.unet = unet
        resolution = pipeline.resolution
        self.mask = load_fixed_mask(resolution, pipeline.mask_image_path)
        self.noise = pipeline.initial_noise(resolution, generator)  # the first draw of a run, as offline
        self.aligner = FaceAligner(resolution, face_index=settings.face_index,
                                   options=face_stage_options(settings, pipeline.unet.device))
        self._features: FeatureStream | None = None

    # ------------------------------------------------------------------ 1. prepare

    def prepare(self, clip: ClipPlan) -> PreparedClip:
        """Tokens and conditioning of a talking clip; frames without the face borrow the clip's nearest one, as offline."""
        if not clip.talking:
            return PreparedClip(clip)
        sources = [frame.source for frame in clip.frames]
        donors = face_donors([bool(self.avatar.has_face[s]) for s in sources])
        if donors is None:
            return PreparedClip(clip)
        chosen = [sources[donors[p]] for p in clip.positions]
        if self._features is None or self._features.start_frame != clip.run_start:
            self._features = FeatureStream(self.pipeline.audio_encoder, self.read_audio, clip.run_start)
        tokens = self._features.tokens([clip.start + p for p in clip.positions], clip.num_samples)
        self._features.forget_before(clip.start)
        pixel_values, _, masks = prepare_masks_and_masked_images(self.avatar.faces[chosen], self.mask)
        vae = self.pipeline.vae
        posterior = [torch.from_numpy(np.asarray(array[chosen])).to(vae.device, vae.dtype)
                     for array in (self.avatar.masked_posterior, self.avatar.reference_posterior)]
        conditioning = self.pipeline.conditioning_from_posteriors(
            pixel_values, masks, *posterior, self.sampling.guidance_scale, self.generator)
        return PreparedClip(clip, conditioning, tokens)

    # ------------------------------------------------------------------ 2. generate

    def generate(self, prepared: PreparedClip) -> torch.Tensor | None:
        """Synced faces (len(frames), 3, r, r) in [-1, 1] on the CPU, or None when nothing is generated."""
        if prepared.conditioning is None:
            return None
        # No generator: DDIM (eta 0) and DPM-Solver++ draw nothing while denoising, and the next clip's
        # draws (step 1, another thread) stay in order.
        synced = self.pipeline.generate(prepared.conditioning, prepared.tokens, self.noise, self.sampling, None,
                                        unet=self.unet)
        return synced[: len(prepared.plan.frames)].cpu()

    # ------------------------------------------------------------------ 3. frames

    def frames(self, clip: ClipPlan, faces: torch.Tensor | None) -> list[StreamFrame]:
        """The clip's output frames: the avatar's own, the restored generated ones, or their blend by alpha."""
        avatar = self.avatar
        restored = None
        if faces is not None:
            restored = self.aligner.restore_clip([avatar.aligned(f.source) for f in clip.frames], faces)
        out = []
        for i, frame in enumerate(clip.frames):
            own = avatar.frames[frame.source]
            synced = restored is not None and frame.alpha > 0 and bool(avatar.has_face[frame.source])
            if not synced:
                image = np.array(own)
            elif frame.alpha >= 1.0:
                image = restored[i]
            else:
                image = blend(own, restored[i], frame.alpha)
            out.append(StreamFrame(frame.index, frame.index / VIDEO_FPS, image, frame.audio, synced,
                                   frame.alpha if synced else 0.0))
        return out


def blend(own: np.ndarray, generated: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha`` of the generated frame over the avatar's own, rounded to uint8 (each pixel moves in a straight line)."""
    mixed = alpha * generated.astype(np.float32) + (1.0 - alpha) * np.asarray(own, np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)

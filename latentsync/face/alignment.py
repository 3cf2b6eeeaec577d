"""Face alignment stage: track one person, crop their face to ``resolution``², paste edits back.

Used by inference (:mod:`latentsync.pipelines.lipsync_pipeline`) and by the preprocessing alignment
step (``preprocess/align_faces.py``). The parts are separate so each can change alone:

* detection: ``face.detection`` (:class:`FaceDetector` back-ends); tracking: ``face.tracking`` (:class:`FaceTracker`);
* warp + restore numerics: ``face.warp`` (:class:`AlignRestore`, golden-tested) and ``face.warp_torch`` (on a device);
* this module: the per-video sequence (track -> align -> resize; resize -> restore), streamed.

Frames go in as an iterable and come out one :class:`AlignedFrame` at a time, so memory does not
grow with the video's length. Crop smoothing is sequential, so one :class:`FaceAligner` handles
one video at a time, in order (``reset()`` between videos).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from latentsync.face.detection import FaceDetection, FaceDetector, FrameBatch
from latentsync.face.tracking import FaceTracker
from latentsync.face.warp import AlignRestore
from latentsync.face.warp_torch import restore_batch, warp_batch

__all__ = ["AlignedFrame", "FaceAligner", "FaceStageOptions", "REFERENCE_FACE_STAGE_OPTIONS"]

DETECT_BATCH = 64  # frames handed to the detector at once (its tracking carries over: FrameBatch)
# The detector sees every DETECT_EVERY-th frame, shrunk to at most DETECT_MAX_SIDE pixels; frames in
# between get the detections interpolated. On a moving 1080x1920 face that is as close to the true
# motion as detecting every full frame (MediaPipe jitters by a few pixels from frame to frame),
# at a fifth of the cost (tests/face/test_alignment.py, benchmarks/RESULTS.md).
DETECT_EVERY = 5
DETECT_MAX_SIDE = 960


@dataclass(frozen=True)
class FaceStageOptions:
    """Settings of the face stage: how faces are tracked, warped and restored frame by frame. The
    defaults are the fast paths; :data:`REFERENCE_FACE_STAGE_OPTIONS` is the plain one they are tested
    against (benchmarks/RESULTS.md compares the two).

    ``detect_every``/``detect_max_side``: see :meth:`FaceAligner.track` (1/None: every full frame).
    ``face_box``: crop and restore on the face's box of the frame rather than the whole frame.
    ``warp_device``: a torch device (a GPU) where crops are warped and clips restored as batched
    tensor operations; None: OpenCV on the CPU, faster there.
    """

    detect_every: int = DETECT_EVERY
    detect_max_side: int | None = DETECT_MAX_SIDE
    face_box: bool = True
    warp_device: str | torch.device | None = None


REFERENCE_FACE_STAGE_OPTIONS = FaceStageOptions(detect_every=1, detect_max_side=None, face_box=False)


@dataclass(frozen=True)
class AlignedFrame:
    """One frame after alignment: the full frame (H, W, 3) uint8 and, if the tracked face was found,
    its aligned crop (r, r, 3) uint8, the (2, 3) float32 frame-to-crop matrix and the detection."""

    frame: np.ndarray
    face: np.ndarray | None
    matrix: np.ndarray | None
    detection: FaceDetection | None = None

    @property
    def found(self) -> bool:
        return self.face is not None


class FaceAligner:
    """Track -> align -> resize for one video's frames, and the inverse paste for edited faces.

    ``detector`` may be None when detections come from elsewhere (``align_frames(frames, detections)``).
    ``face_index`` picks the person as :class:`FaceTracker` does (None: the largest face).
    ``smooth`` steadies the crop over frames (upstream's inference and preprocessing both do).
    ``options`` picks the fast or the reference way of tracking, warping and restoring (:class:`FaceStageOptions`).
    """

    def __init__(
        self,
        resolution: int = 256,
        detector: FaceDetector | None = None,
        face_index: int | None = None,
        batch_size: int = DETECT_BATCH,
        smooth: bool = True,
        options: FaceStageOptions = FaceStageOptions(),
    ) -> None:
        if options.detect_every < 1 or (options.detect_max_side or 1) < 1:
            raise ValueError(f"detect_every and detect_max_side must be >= 1, got {options}")
        self.resolution = resolution
        self.smooth = smooth
        self.detector = detector
        self.batch_size = batch_size
        self.options = options
        self.warp_device = None if options.warp_device is None else torch.device(options.warp_device)
        self.tracker = FaceTracker(face_index=face_index)
        self.restorer = AlignRestore(resolution)

    def reset(self) -> None:
        """Start a new video: forget the tracked person and the crop smoothing."""
        self.tracker.reset()
        self.restorer.reset()

    # ------------------------------------------------------------------ tracking

    def track(
        self, frames: Iterable[np.ndarray], frame_size: tuple[int, int] | None = None
    ) -> Iterator[tuple[np.ndarray, FaceDetection | None]]:
        """(frame, the tracked person's detection or None) for consecutive RGB frames, streamed
        batch by batch through the detector.

        The detector sees every ``detect_every``-th frame of the video (and its last), shrunk to at
        most ``detect_max_side`` pixels, as one sequence (:class:`FrameBatch`): key frames and
        tracking state run on across batches, so batch boundaries leave no trace in the crops.
        Between two key frames where the person was found the box and landmarks are interpolated
        linearly; between two without them, nothing is found; where the person appears or is lost in
        between, every frame is detected. ``frame_size`` (width, height) is the size the detections
        refer to when ``frames`` are already shrunk copies (e.g. :meth:`VideoReader.frames` with
        ``max_side``); None: the frames' own size.
        """
        if self.detector is None:
            raise ValueError("FaceAligner has no detector: pass detector= or give align_frames the detections")
        frames = iter(frames)
        run = object()  # this pass over the video
        every = self.options.detect_every
        last: FaceDetection | None = None  # the person at the latest key frame
        gap: list[np.ndarray] = []  # frames after the latest key frame, waiting for the next one
        start = 0  # index in the video of the batch's first frame
        while batch := list(islice(frames, self.batch_size)):
            keys = [k for k in range(len(batch)) if (start + k) % every == 0]
            found = dict(zip(keys, self._detect([batch[k] for k in keys], frame_size, run)))
            for k, frame in enumerate(batch):
                if k not in found:
                    gap.append(frame)
                    continue
                tracked = self._close_gap(gap, last, frame, found[k], frame_size)
                yield from tracked
                last, gap = tracked[-1][1], []
            start += len(batch)
        if gap:  # the video's last frame is a key frame too
            final = gap.pop()
            faces = self._detect([final], frame_size, run)[0]
            yield from self._close_gap(gap, last, final, faces, frame_size)

    def _detect(
        self, frames: list[np.ndarray], frame_size: tuple[int, int] | None, run: object | None = None
    ) -> list[list[FaceDetection]]:
        """The detector's faces in consecutive ``frames``, shrunk for it, in ``frame_size`` pixels;
        with ``run``, the frames continue that run's earlier ones (:class:`FrameBatch`)."""
        shrunk, scales = [], []
        for frame in frames:
            height, width = frame.shape[:2]
            factor = 1.0
            if self.options.detect_max_side is not None and max(width, height) > self.options.detect_max_side:
                factor = self.options.detect_max_side / max(width, height)
                frame = cv2.resize(frame, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
            full_w, full_h = frame_size if frame_size is not None else (width, height)
            shrunk.append(frame)
            scales.append(np.array([full_w / frame.shape[1], full_h / frame.shape[0]]))
        found = self.detector.detect_batch(shrunk if run is None else FrameBatch(shrunk, run))
        return [
            [_scaled(face, scale) for face in faces] if not np.allclose(scale, 1) else faces
            for faces, scale in zip(found, scales)
        ]

    def _close_gap(
        self,
        gap: list[np.ndarray],
        last: FaceDetection | None,
        key: np.ndarray,
        faces: list[FaceDetection],
        frame_size: tuple[int, int] | None,
    ) -> list[tuple[np.ndarray, FaceDetection | None]]:
        """(frame, person) for the ``gap`` frames after the key frame where the person was ``last`` and
        for the next ``key`` frame, whose detections are ``faces``."""
        trial = copy.copy(self.tracker)
        picked = trial.update(faces)
        if not gap or (picked is not None and last is not None):
            # The tracker followed the person from the last key frame to this one: interpolate.
            tracked = [(frame, _interpolate(last, picked, i / (len(gap) + 1))) for i, frame in enumerate(gap, 1)]
            self.tracker = trial
        elif picked is None and last is None:
            # Nobody at either end: take the gap as empty too (a face seen only in between is missed).
            tracked = [(frame, self.tracker.update([])) for frame in gap]
            picked = self.tracker.update(faces)
        else:
            # The person appears, leaves or is lost in between: detect every frame of the gap (as a
            # sequence of its own; the key frames' sequence runs on).
            tracked = [(frame, self.tracker.update(found)) for frame, found in zip(gap, self._detect(gap, frame_size))]
            picked = self.tracker.update(faces)
        return [*tracked, (key, picked)]

    # ------------------------------------------------------------------ alignment

    def align(self, frame: np.ndarray, detection: FaceDetection | None) -> AlignedFrame:
        """Warp the face onto the template (landmarks rounded, as upstream) and resize it to ``resolution``²."""
        if detection is None:
            return AlignedFrame(frame, None, None, None)
        matrix = self.restorer.estimate_matrix(np.round(detection.landmarks), smooth=self.smooth)
        return AlignedFrame(frame, self.crop(frame, matrix), matrix, detection)

    def crop(self, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The (r, r, 3) uint8 face of ``frame`` through a frame-to-crop ``matrix`` (e.g. a neighbour's,
        for a frame where the face was missed)."""
        if self.warp_device is not None:
            frames = torch.from_numpy(frame).to(self.warp_device)[None]
            crop = warp_batch(frames, torch.from_numpy(matrix)[None], self.restorer.face_size)[0].cpu().numpy()
        else:
            crop = self.restorer.warp(frame, matrix, full_frame=not self.options.face_box)
        return cv2.resize(crop, (self.resolution, self.resolution), interpolation=cv2.INTER_LANCZOS4)

    def align_frames(
        self, frames: Iterable[np.ndarray], detections: Sequence[FaceDetection | None] | None = None
    ) -> Iterator[AlignedFrame]:
        """Aligned frames in order. With ``detections`` (one per frame, e.g. from an earlier
        :meth:`track` pass) no detector runs; otherwise detection and tracking stream alongside."""
        pairs = self.track(frames) if detections is None else zip(frames, detections)
        for frame, detection in pairs:
            yield self.align(frame, detection)

    # ------------------------------------------------------------------ restore

    def restore(self, aligned: AlignedFrame, face: torch.Tensor) -> np.ndarray:
        """Paste an edited face (3, r, r) in [-1, 1] back into its frame; returns (H, W, 3) uint8."""
        return self.restore_clip([aligned], face[None])[0]

    def restore_clip(self, clip: Sequence[AlignedFrame], faces: torch.Tensor) -> list[np.ndarray]:
        """Paste edited faces (f, 3, r, r) in [-1, 1] back into their frames (frames without a face pass
        through); with a ``warp_device``, as one batch there."""
        crop_w, crop_h = self.restorer.face_size
        found = [i for i, aligned in enumerate(clip) if aligned.found]
        restored = [aligned.frame for aligned in clip]
        if not found:
            return restored
        device = self.warp_device or faces.device
        crops = faces[found].to(device)
        crops = TF.resize(crops, [crop_h, crop_w], interpolation=InterpolationMode.BICUBIC, antialias=True)
        if self.warp_device is not None:
            frames = torch.from_numpy(np.stack([clip[i].frame for i in found])).to(device)
            matrices = torch.from_numpy(np.stack([clip[i].matrix for i in found])).to(device)
            pasted = restore_batch(frames, crops, matrices).cpu().numpy()
        else:
            full = not self.options.face_box
            pasted = [self.restorer.restore_img(clip[i].frame, c, clip[i].matrix, full) for i, c in zip(found, crops)]
        for i, frame in zip(found, pasted):
            restored[i] = frame
        return restored


def _scaled(face: FaceDetection, scale: np.ndarray) -> FaceDetection:
    """``face`` found in a shrunk frame, in the pixels of the full one (``scale`` = full / shrunk, x and y)."""
    x1, y1, x2, y2 = face.box
    box = (x1 * scale[0], y1 * scale[1], x2 * scale[0], y2 * scale[1])
    return FaceDetection(tuple(float(v) for v in box), face.landmarks * scale, face.score)


def _interpolate(a: FaceDetection, b: FaceDetection, t: float) -> FaceDetection:
    """The face a fraction ``t`` of the way from detection ``a`` to ``b`` (no detector score: NaN)."""
    box = tuple(float((1 - t) * p + t * q) for p, q in zip(a.box, b.box))
    return FaceDetection(box, (1 - t) * a.landmarks + t * b.landmarks, math.nan)

"""Following one person through a video: box overlap (IoU) matching, the tracker, identity breaks."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np

from latentsync.errors import ConfigError
from latentsync.face.detection import FaceDetection, FaceDetector, FrameBatch

logger = logging.getLogger(__name__)

__all__ = ["FaceTracker", "best_overlap", "best_overlap_index", "box_iou", "identity_breaks"]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


_SAME_FACE_IOU = 0.3


def best_overlap_index(box: Sequence[float], faces: Sequence[FaceDetection]) -> int | None:
    """Index of the face overlapping ``box`` most, if that overlap makes it the same face."""
    overlaps = [box_iou(box, face.box) for face in faces]
    if not overlaps or max(overlaps) < _SAME_FACE_IOU:
        return None
    return int(np.argmax(overlaps))


def best_overlap(box: Sequence[float], faces: Sequence[FaceDetection]) -> FaceDetection | None:
    index = best_overlap_index(box, faces)
    return None if index is None else faces[index]


class FaceTracker:
    """Follows one person through consecutive frames.

    The target is chosen in the first frame that has faces: ``face_index`` into the faces sorted
    left to right, or the largest face when ``face_index`` is None. Afterwards each frame's face is
    the one overlapping the previous target box most (IoU >= ``min_iou``), else the one whose centre
    moved least, at most ``max_shift`` box sizes (growing with the number of missed frames). A frame
    without a match gives None (callers leave it untouched); after ``reacquire_after`` such frames the
    target is chosen afresh as in the first frame.
    """

    def __init__(
        self,
        face_index: int | None = None,
        min_iou: float = 0.3,
        max_shift: float = 0.5,
        reacquire_after: int = 25,
    ) -> None:
        if face_index is not None and face_index < 0:
            raise ConfigError(f"face_index must be >= 0 (faces are counted left to right), got {face_index}")
        self.face_index = face_index
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.reacquire_after = reacquire_after
        self.reset()

    def reset(self) -> None:
        """Forget the target (start of a new video)."""
        self._last: FaceDetection | None = None
        self._missed = 0

    def _choose_initial(self, faces: Sequence[FaceDetection]) -> FaceDetection | None:
        if self.face_index is None:
            return max(faces, key=lambda f: f.area)
        ordered = sorted(faces, key=lambda f: f.center[0])
        if self.face_index >= len(ordered):
            logger.debug("face_index %d but only %d faces in frame", self.face_index, len(ordered))
            return None
        return ordered[self.face_index]

    def _match(self, faces: Sequence[FaceDetection]) -> FaceDetection | None:
        last = self._last
        overlaps = [box_iou(last.box, f.box) for f in faces]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= self.min_iou:
            return faces[best]
        size = math.sqrt(max(last.area, 1.0))
        shifts = [math.dist(last.center, f.center) / size for f in faces]
        best = int(np.argmin(shifts))
        if shifts[best] <= self.max_shift * (1 + self._missed):
            return faces[best]
        return None

    def update(self, faces: Sequence[FaceDetection]) -> FaceDetection | None:
        """The target among one frame's detections, or None if it is not visible."""
        if not faces:
            chosen = None
        elif self._last is None or self._missed >= self.reacquire_after:
            chosen = self._choose_initial(faces)
        else:
            chosen = self._match(faces)
        if chosen is None:
            self._missed += 1
        else:
            self._last, self._missed = chosen, 0
        return chosen

    def track(
        self, frames: Iterable[np.ndarray], detector: FaceDetector, batch_size: int = 64
    ) -> list[FaceDetection | None]:
        """Detect and follow the target over consecutive RGB frames; one entry per frame (the batches are
        one sequence for the detector's tracking mode)."""
        chosen: list[FaceDetection | None] = []
        run = object()
        batch = FrameBatch([], run)
        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                chosen.extend(self.update(faces) for faces in detector.detect_batch(batch))
                batch = FrameBatch([], run)
        if batch:
            chosen.extend(self.update(faces) for faces in detector.detect_batch(batch))
        return chosen


def identity_breaks(detections: Iterable[FaceDetection | None], max_shift: float = 1.0, max_scale: float = 2.0) -> int:
    """How many times the tracked face jumps between consecutive sightings (gaps skipped): its centre
    moves more than ``max_shift`` face sizes or its area changes by more than ``max_scale`` times.

    A jump means the tracker most likely switched to someone else (or the shot changed).
    """
    breaks, last = 0, None
    for detection in detections:
        if detection is None:
            continue
        if last is not None:
            size = math.sqrt(max(last.area, 1.0))
            ratio = max(detection.area, 1.0) / max(last.area, 1.0)
            if math.dist(last.center, detection.center) / size > max_shift or not 1 / max_scale <= ratio <= max_scale:
                breaks += 1
        last = detection
    return breaks

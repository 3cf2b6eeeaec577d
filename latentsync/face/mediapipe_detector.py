"""The offline CPU face detector: MediaPipe's full-range BlazeFace for boxes, FaceMesh for landmarks."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentsync.errors import FaceDetectorUnavailableError
from latentsync.face.detection import FaceDetection, FrameBatch, check_frame, mesh_points, native_stderr_silenced
from latentsync.face.tracking import best_overlap, best_overlap_index

logger = logging.getLogger(__name__)

__all__ = ["MediapipeFaceDetector"]


@dataclass
class _TrackingRun:
    """A FaceMesh graph in tracking mode and where it stands in its sequence of frames."""

    graph: Any
    run: object = None  # the FrameBatch run it follows (None: one plain batch)
    previous: list[FaceDetection] = field(default_factory=list)  # faces of the last frame
    frames_seen: int = 0


class MediapipeFaceDetector:
    """CPU face detector from the ``mediapipe`` wheel (no downloads).

    ``detect`` treats each frame on its own: full-range BlazeFace finds the faces, then FaceMesh runs
    on a square crop around each (``crop_scale`` times the box). ``detect_batch`` is for consecutive
    video frames: a FaceMesh graph in tracking mode follows one face from frame to frame (steadier
    landmarks, no re-detection), other faces are followed through crops around their last position,
    and the detector runs only every ``detect_every`` frames to find new ones. The batches of one
    :class:`FrameBatch` run share one tracking graph: a restarted graph measures its first frame
    through the box of its own detector rather than the previous landmarks, ~2 px off on a 250-pixel
    face, which made aligned crops jump at every batch boundary. Reuse one instance (it keeps the
    graph of the latest run); ``close()`` frees the graphs.
    """

    def __init__(
        self,
        max_faces: int = 4,
        min_score: float = 0.5,
        crop_scale: float = 2.0,
        detect_every: int = 5,
        show_native_logs: bool = False,
    ) -> None:
        self.show_native_logs = show_native_logs
        with self._quiet():
            self._build(max_faces, min_score, crop_scale, detect_every)

    def _quiet(self) -> contextlib.AbstractContextManager:
        return native_stderr_silenced(not self.show_native_logs)

    def _build(self, max_faces: int, min_score: float, crop_scale: float, detect_every: int) -> None:
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # pragma: no cover - mediapipe is a pinned dependency
            raise FaceDetectorUnavailableError(
                "mediapipe is not installed; install the pinned version with `pip install mediapipe==0.10.14`"
            ) from exc
        self._face_mesh = face_mesh
        self.max_faces = max_faces
        self.min_score = min_score
        self.crop_scale = crop_scale
        self.detect_every = max(1, detect_every)
        # model_selection=1 is the full-range model: it also finds faces far from the camera.
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score)
        self._crop_mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=min_score
        )
        self._run: _TrackingRun | None = None  # the tracking graph of the latest FrameBatch run
        # The graphs open their models on their own threads, and log while doing so, after the
        # constructors return: wait for that inside the silenced block.
        for solution in (self._detector, self._crop_mesh):
            solution._graph.wait_until_idle()

    def close(self) -> None:
        with self._quiet():
            self._end_run()
            self._detector.close()
            self._crop_mesh.close()

    def __enter__(self) -> MediapipeFaceDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _find_boxes(self, frame: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        height, width = frame.shape[:2]
        result = self._detector.process(frame)
        boxes = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            x1, y1 = rel.xmin * width, rel.ymin * height
            boxes.append(((x1, y1, x1 + rel.width * width, y1 + rel.height * height), float(det.score[0])))
        boxes.sort(key=lambda item: -item[1])
        return boxes[: self.max_faces]

    @staticmethod
    def _mesh_pixels(landmarks, width: int, height: int, offset=(0.0, 0.0)) -> np.ndarray:
        return np.array(
            [(p.x * width + offset[0], p.y * height + offset[1]) for p in landmarks.landmark], dtype=np.float64
        )

    def _detection_from_mesh(self, mesh: np.ndarray, frame_shape, score: float) -> FaceDetection:
        height, width = frame_shape[:2]
        x1, y1 = np.clip(mesh.min(0), 0, [width, height])
        x2, y2 = np.clip(mesh.max(0), 0, [width, height])
        return FaceDetection((float(x1), float(y1), float(x2), float(y2)), mesh_points(mesh), score)

    def _mesh_in_box(self, frame: np.ndarray, box, score: float) -> FaceDetection | None:
        height, width = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = self.crop_scale * max(box[2] - box[0], box[3] - box[1]) / 2
        x1, y1 = max(0, int(cx - half)), max(0, int(cy - half))
        x2, y2 = min(width, int(math.ceil(cx + half))), min(height, int(math.ceil(cy + half)))
        if x2 - x1 < 8 or y2 - y1 < 8:
            return None
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
        result = self._crop_mesh.process(crop)
        if not result.multi_face_landmarks:
            logger.debug("FaceMesh found no face inside detector box %s", box)
            return None
        mesh = self._mesh_pixels(result.multi_face_landmarks[0], x2 - x1, y2 - y1, offset=(x1, y1))
        return self._detection_from_mesh(mesh, frame.shape, score)

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        """All faces (up to ``max_faces``) in one RGB uint8 frame, highest detector score first."""
        frame = check_frame(frame)
        with self._quiet():
            faces = [self._mesh_in_box(frame, box, score) for box, score in self._find_boxes(frame)]
        return [face for face in faces if face is not None]

    def detect_batch(self, frames: Iterable[np.ndarray], consecutive: bool = True) -> list[list[FaceDetection]]:
        """Faces per frame. With ``consecutive`` (frames of one video, in order) a FaceMesh graph in
        tracking mode follows the faces and the full-range detector runs only every ``detect_every``
        frames (or while nothing is followed) to pick up new faces; a :class:`FrameBatch` continues
        the tracking of the earlier batches of its run, a plain list gets a graph of its own.
        Otherwise each frame is handled like :meth:`detect`."""
        if not consecutive:
            return [self.detect(frame) for frame in frames]
        run = frames.run if isinstance(frames, FrameBatch) else None
        with self._quiet():
            if run is None:
                tracking = _TrackingRun(self._tracking_graph())
                try:
                    return self._track_batch(frames, tracking)
                finally:
                    tracking.graph.close()
            if self._run is None or self._run.run is not run:
                self._end_run()
                self._run = _TrackingRun(self._tracking_graph(), run)
            return self._track_batch(frames, self._run)

    def _tracking_graph(self):
        # One tracked face keeps FaceMesh from re-running its detector on every frame (it does while
        # it follows fewer faces than its maximum); further faces take the crop path.
        return self._face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=self.min_score,
            min_tracking_confidence=self.min_score,
        )

    def _end_run(self) -> None:
        if self._run is not None:
            self._run.graph.close()
            self._run = None

    def _track_batch(self, frames: Iterable[np.ndarray], tracking: _TrackingRun) -> list[list[FaceDetection]]:
        results: list[list[FaceDetection]] = []
        for frame in frames:
            run_detector = tracking.frames_seen % self.detect_every == 0
            frame = check_frame(frame)
            tracking.previous = self._detect_tracked(frame, tracking.graph, tracking.previous, run_detector)
            tracking.frames_seen += 1
            results.append(tracking.previous)
        return results

    def _detect_tracked(
        self, frame: np.ndarray, tracker, previous: list[FaceDetection], run_detector: bool
    ) -> list[FaceDetection]:
        height, width = frame.shape[:2]
        meshes = tracker.process(frame).multi_face_landmarks or []
        faces = [self._detection_from_mesh(self._mesh_pixels(m, width, height), frame.shape, math.nan) for m in meshes]
        # Scores carry over from the overlapping face of the previous frame.
        for i, face in enumerate(faces):
            match = best_overlap(face.box, previous)
            if match is not None:
                faces[i] = FaceDetection(face.box, face.landmarks, match.score)
        # Faces the tracker does not cover (too small for FaceMesh's own detector) are followed by
        # running FaceMesh on a crop around where they were.
        for old in previous:
            if best_overlap(old.box, faces) is None:
                face = self._mesh_in_box(frame, old.box, old.score)
                if face is not None:
                    faces.append(face)
        if run_detector or not faces:
            for box, score in self._find_boxes(frame):
                index = best_overlap_index(box, faces)
                if index is None:
                    face = self._mesh_in_box(frame, box, score)
                    if face is not None:
                        faces.append(face)
                else:
                    face = faces[index]
                    faces[index] = FaceDetection(face.box, face.landmarks, score)
        return faces[: self.max_faces]

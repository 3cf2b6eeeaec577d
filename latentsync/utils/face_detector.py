"""Face detection for alignment: boxes plus the three points the affine crop needs.

Two backends behind one interface (``detect`` / ``detect_batch`` returning :class:`FaceDetection`):

* :class:`InsightFaceDetector`: what LatentSync 1.5/1.6 use, InsightFace ``buffalo_l``
  (SCRFD ``det_10g`` + ``2d106det`` landmarks) from ``checkpoints/auxiliary/models/buffalo_l``.
  Optional: ``insightface`` and its models are not part of the default install.
* :class:`MediapipeFaceDetector`: offline, CPU-only, bundled with the ``mediapipe`` wheel.
  The full-range BlazeFace detector finds faces of any size; FaceMesh supplies the landmarks.

:class:`FaceTracker` follows one person through a video. The three points are always
[image-left eyebrow centre, image-right eyebrow centre, nose centre] in (x, y) pixels, the
order of :class:`~latentsync.utils.affine_transform.AlignRestore`'s template. They are not
rounded here; upstream rounds them to integers just before the warp.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from latentsync.errors import ConfigError, FaceDetectorUnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "FaceDetection",
    "FaceDetector",
    "FaceDetectorUnavailableError",
    "FaceTracker",
    "InsightFaceDetector",
    "MediapipeFaceDetector",
    "insightface_available",
    "insightface_points",
    "make_face_detector",
    "mesh_points",
]

DETECTOR_NAMES = ("auto", "insightface", "mediapipe")

# FaceMesh (468 points) indices averaged into the three alignment points.
MESH_LEFT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
MESH_RIGHT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
MESH_NOSE = (1, 4, 5, 195, 197)

# InsightFace 2d106det indices averaged into the same points (as upstream's image processor).
INSIGHTFACE_LEFT_BROW = (43, 48, 49, 51, 50)
INSIGHTFACE_RIGHT_BROW = (101, 102, 103, 104, 105)
INSIGHTFACE_NOSE = (74, 77, 83, 86)
INSIGHTFACE_PACK = "buffalo_l"
INSIGHTFACE_FILES = ("det_10g.onnx", "2d106det.onnx")
INSIGHTFACE_DET_SIZE = 512


@dataclass(frozen=True)
class FaceDetection:
    """One face: ``box`` (x1, y1, x2, y2) pixels, ``landmarks`` (3, 2) float (x, y) pixels
    [image-left brow, image-right brow, nose], ``score`` detector confidence in [0, 1]
    (NaN when only a landmark tracker saw the face in this frame)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[FaceDetection]: ...

    def detect_batch(
        self, frames: Iterable[np.ndarray], consecutive: bool = True
    ) -> list[list[FaceDetection]]: ...


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        shape, dtype = getattr(frame, "shape", None), getattr(frame, "dtype", None)
        raise ValueError(f"expected an RGB (H, W, 3) uint8 frame, got shape {shape} dtype {dtype}")
    return np.ascontiguousarray(frame)


def mesh_points(mesh: np.ndarray) -> np.ndarray:
    """(3, 2) alignment points from (468+, 2) FaceMesh pixel coordinates."""
    return np.stack(
        [mesh[list(MESH_LEFT_BROW)].mean(0), mesh[list(MESH_RIGHT_BROW)].mean(0), mesh[list(MESH_NOSE)].mean(0)]
    )


def insightface_points(landmarks_106: np.ndarray) -> np.ndarray:
    """(3, 2) alignment points from InsightFace's (106, 2) landmarks.

    Upstream rounds the 106 points to integers before averaging; that rounding is kept.
    """
    rounded = np.round(np.asarray(landmarks_106, dtype=np.float64))
    if rounded.shape != (106, 2):
        raise ValueError(f"expected (106, 2) landmarks, got shape {rounded.shape}")
    return np.stack(
        [
            rounded[list(INSIGHTFACE_LEFT_BROW)].mean(0),
            rounded[list(INSIGHTFACE_RIGHT_BROW)].mean(0),
            rounded[list(INSIGHTFACE_NOSE)].mean(0),
        ]
    )


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


_SAME_FACE_IOU = 0.3


def _best_overlap_index(box: Sequence[float], faces: Sequence[FaceDetection]) -> int | None:
    """Index of the face overlapping ``box`` most, if that overlap makes it the same face."""
    overlaps = [_iou(box, face.box) for face in faces]
    if not overlaps or max(overlaps) < _SAME_FACE_IOU:
        return None
    return int(np.argmax(overlaps))


def _best_overlap(box: Sequence[float], faces: Sequence[FaceDetection]) -> FaceDetection | None:
    index = _best_overlap_index(box, faces)
    return None if index is None else faces[index]


# ----------------------------------------------------------------------------------------------
# MediaPipe


class MediapipeFaceDetector:
    """CPU face detector from the ``mediapipe`` wheel (no downloads).

    ``detect`` treats each frame on its own: full-range BlazeFace finds the faces, then FaceMesh runs
    on a square crop around each (``crop_scale`` times the box). ``detect_batch`` is for consecutive
    video frames: a FaceMesh graph in tracking mode follows one face from frame to frame (steadier
    landmarks, no re-detection), other faces are followed through crops around their last position,
    and the detector runs only every ``detect_every`` frames to find new ones. Reuse one instance;
    ``close()`` frees the graphs.
    """

    def __init__(
        self, max_faces: int = 4, min_score: float = 0.5, crop_scale: float = 2.0, detect_every: int = 5
    ) -> None:
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

    def close(self) -> None:
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
        frame = _check_frame(frame)
        faces = (self._mesh_in_box(frame, box, score) for box, score in self._find_boxes(frame))
        return [face for face in faces if face is not None]

    def detect_batch(self, frames: Iterable[np.ndarray], consecutive: bool = True) -> list[list[FaceDetection]]:
        """Faces per frame. With ``consecutive`` (frames of one video, in order) a FaceMesh graph in
        tracking mode, created for this call, follows the faces and the full-range detector runs only
        every ``detect_every`` frames (or while nothing is followed) to pick up new faces; otherwise
        each frame is handled like :meth:`detect`."""
        if not consecutive:
            return [self.detect(frame) for frame in frames]
        # One tracked face keeps FaceMesh from re-running its detector on every frame (it does while
        # it follows fewer faces than its maximum); further faces take the crop path.
        tracker = self._face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=self.min_score,
            min_tracking_confidence=self.min_score,
        )
        results: list[list[FaceDetection]] = []
        try:
            previous: list[FaceDetection] = []
            for index, frame in enumerate(frames):
                previous = self._detect_tracked(_check_frame(frame), tracker, previous, index % self.detect_every == 0)
                results.append(previous)
        finally:
            tracker.close()
        return results

    def _detect_tracked(
        self, frame: np.ndarray, tracker, previous: list[FaceDetection], run_detector: bool
    ) -> list[FaceDetection]:
        height, width = frame.shape[:2]
        meshes = tracker.process(frame).multi_face_landmarks or []
        faces = [self._detection_from_mesh(self._mesh_pixels(m, width, height), frame.shape, math.nan) for m in meshes]
        # Scores carry over from the overlapping face of the previous frame.
        for i, face in enumerate(faces):
            match = _best_overlap(face.box, previous)
            if match is not None:
                faces[i] = FaceDetection(face.box, face.landmarks, match.score)
        # Faces the tracker does not cover (too small for FaceMesh's own detector) are followed by
        # running FaceMesh on a crop around where they were.
        for old in previous:
            if _best_overlap(old.box, faces) is None:
                face = self._mesh_in_box(frame, old.box, old.score)
                if face is not None:
                    faces.append(face)
        if run_detector or not faces:
            for box, score in self._find_boxes(frame):
                index = _best_overlap_index(box, faces)
                if index is None:
                    face = self._mesh_in_box(frame, box, score)
                    if face is not None:
                        faces.append(face)
                else:
                    face = faces[index]
                    faces[index] = FaceDetection(face.box, face.landmarks, score)
        return faces[: self.max_faces]


# ----------------------------------------------------------------------------------------------
# InsightFace


def _insightface_model_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / "models" / INSIGHTFACE_PACK


def insightface_available(model_dir: str | Path = "checkpoints/auxiliary") -> bool:
    """True when ``insightface`` can be imported and the buffalo_l detection/landmark models exist."""
    pack = _insightface_model_dir(model_dir)
    if not all((pack / name).is_file() for name in INSIGHTFACE_FILES):
        return False
    try:
        import insightface  # noqa: F401
    except ImportError:
        return False
    return True


class InsightFaceDetector:
    """LatentSync 1.5/1.6's detector: InsightFace ``FaceAnalysis`` (buffalo_l: detection +
    2d106det) at 512x512 detection size, reading models from ``<model_dir>/models/buffalo_l``.

    Like upstream it drops faces under 50x80 px, with width/height outside [0.2, 1.5], or scoring
    below ``min_score``, and it is fed the RGB frame as is (upstream does not convert to BGR).
    """

    def __init__(
        self,
        model_dir: str | Path = "checkpoints/auxiliary",
        device: str = "cpu",
        min_score: float = 0.5,
        det_size: int = INSIGHTFACE_DET_SIZE,
    ) -> None:
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise FaceDetectorUnavailableError(
                "the insightface face detector needs the optional packages `insightface==0.7.3` and "
                "`onnxruntime` (or `onnxruntime-gpu`); install them, or use face_detector='mediapipe'"
            ) from exc
        pack = _insightface_model_dir(model_dir)
        missing = [name for name in INSIGHTFACE_FILES if not (pack / name).is_file()]
        if missing:
            # FaceAnalysis would try to download the pack; inference must stay offline.
            raise FaceDetectorUnavailableError(
                f"InsightFace models {', '.join(missing)} not found in {pack}; put the {INSIGHTFACE_PACK} "
                "pack there (`bash setup_env.sh --with-training` fetches checkpoints/auxiliary), or use "
                "face_detector='mediapipe'"
            )
        on_cuda = str(device).startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_cuda else ["CPUExecutionProvider"]
        ctx_id = (int(str(device).split(":")[1]) if ":" in str(device) else 0) if on_cuda else -1
        self.min_score = min_score
        self._app = FaceAnalysis(
            name=INSIGHTFACE_PACK,
            root=str(model_dir),
            allowed_modules=["detection", "landmark_2d_106"],
            providers=providers,
        )
        self._app.prepare(ctx_id=ctx_id, det_size=(det_size, det_size))

    def _keep(self, box: Sequence[float], score: float) -> bool:
        x1, y1, x2, y2 = (int(v) for v in box)
        w, h = x2 - x1, y2 - y1
        return w >= 50 and h >= 80 and 0.2 <= w / h <= 1.5 and score >= self.min_score

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        """All kept faces in one RGB uint8 frame, largest box first."""
        frame = _check_frame(frame)
        faces = []
        for face in self._app.get(frame):
            box = tuple(float(v) for v in face.bbox)
            score = float(face.det_score)
            if self._keep(box, score):
                faces.append(FaceDetection(box, insightface_points(face.landmark_2d_106), score))
        faces.sort(key=lambda f: -f.area)
        return faces

    def detect_batch(self, frames: Iterable[np.ndarray], consecutive: bool = True) -> list[list[FaceDetection]]:
        """Faces per frame (InsightFace has no tracking mode; ``consecutive`` is accepted for symmetry)."""
        return [self.detect(frame) for frame in frames]


def make_face_detector(
    name: str = "auto", model_dir: str | Path = "checkpoints/auxiliary", device: str = "cpu"
) -> InsightFaceDetector | MediapipeFaceDetector:
    """Build a detector by name: "insightface" (upstream's), "mediapipe" (offline CPU) or "auto"
    (insightface when it and its models are installed, else mediapipe)."""
    if name not in DETECTOR_NAMES:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    if name == "insightface" or (name == "auto" and insightface_available(model_dir)):
        return InsightFaceDetector(model_dir=model_dir, device=device)
    if name == "auto":
        logger.info("insightface or its models in %s are unavailable; using the MediaPipe face detector", model_dir)
    return MediapipeFaceDetector()


# ----------------------------------------------------------------------------------------------
# Tracking


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
        overlaps = [_iou(last.box, f.box) for f in faces]
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
        """Detect and follow the target over consecutive RGB frames; one entry per frame."""
        chosen: list[FaceDetection | None] = []
        batch: list[np.ndarray] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                chosen.extend(self.update(faces) for faces in detector.detect_batch(batch))
                batch = []
        if batch:
            chosen.extend(self.update(faces) for faces in detector.detect_batch(batch))
        return chosen

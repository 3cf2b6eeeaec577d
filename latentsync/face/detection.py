"""What a face detection is, and how to get one: boxes plus the three points the affine crop needs.

Two back-ends give :class:`FaceDetection` lists behind one interface (:class:`FaceDetector`:
``detect`` / ``detect_batch``), each in its own module:

* :class:`~latentsync.face.insightface_detector.InsightFaceDetector`: what LatentSync 1.5/1.6 use,
  InsightFace ``buffalo_l`` (SCRFD ``det_10g`` + ``2d106det`` landmarks) from
  ``checkpoints/auxiliary/models/buffalo_l``. Optional: ``insightface`` and its models are not part
  of the default install.
* :class:`~latentsync.face.mediapipe_detector.MediapipeFaceDetector`: offline, CPU-only, bundled
  with the ``mediapipe`` wheel. The full-range BlazeFace detector finds faces of any size; FaceMesh
  supplies the landmarks.

The three points are always [image-left eyebrow centre, image-right eyebrow centre, nose centre]
in (x, y) pixels, the order of :class:`~latentsync.face.warp.AlignRestore`'s template; the tables
below say which landmarks of each model are averaged into them. They are not rounded here;
upstream rounds them to integers just before the warp.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from latentsync import paths
from latentsync.errors import ConfigError

if TYPE_CHECKING:
    from latentsync.face.insightface_detector import InsightFaceDetector
    from latentsync.face.mediapipe_detector import MediapipeFaceDetector

logger = logging.getLogger(__name__)

__all__ = [
    "DETECTOR_NAMES",
    "FaceDetection",
    "FaceDetector",
    "FrameBatch",
    "check_frame",
    "insightface_points",
    "make_face_detector",
    "mesh_points",
    "native_stderr_silenced",
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


class FrameBatch(list):
    """Consecutive frames of one video, in order, that continue the earlier batches of the same ``run``
    (an object standing for one pass over one video).

    A detector with a tracking mode carries its tracking state from one batch of a run to the next,
    so a long video handed over batch by batch is tracked as one sequence; a plain list is a
    sequence of its own. Being a list, a batch passes unchanged through wrappers of a detector.
    """

    def __init__(self, frames: Iterable[np.ndarray], run: object) -> None:
        super().__init__(frames)
        self.run = run


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[FaceDetection]: ...

    def detect_batch(
        self, frames: Iterable[np.ndarray], consecutive: bool = True
    ) -> list[list[FaceDetection]]: ...


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block.

    MediaPipe's C++ (absl, glog, TFLite) and InsightFace write warnings straight to the process's
    stderr, past Python's logging, some of them after a run's last line; only the descriptor
    itself can be quieted. ``enabled=False`` (``--verbose``) lets them through.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_frame(frame: np.ndarray) -> np.ndarray:
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


def make_face_detector(
    name: str = "auto",
    model_dir: str | Path = paths.AUXILIARY_DIR,
    device: str = "cpu",
    show_native_logs: bool = False,
) -> InsightFaceDetector | MediapipeFaceDetector:
    """Build a detector by name: "insightface" (upstream's), "mediapipe" (offline CPU) or "auto"
    (insightface when it and its models are installed, else mediapipe). The native libraries'
    own stderr output is silenced unless ``show_native_logs``."""
    # The back-ends import this module's types, so they are imported here, when one is built.
    from latentsync.face.insightface_detector import InsightFaceDetector, insightface_available
    from latentsync.face.mediapipe_detector import MediapipeFaceDetector

    if name not in DETECTOR_NAMES:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    if name == "insightface" or (name == "auto" and insightface_available(model_dir)):
        return InsightFaceDetector(model_dir=model_dir, device=device, show_native_logs=show_native_logs)
    if name == "auto":
        logger.info("insightface or its models in %s are unavailable; using the MediaPipe face detector", model_dir)
    return MediapipeFaceDetector(show_native_logs=True) if show_native_logs else MediapipeFaceDetector()

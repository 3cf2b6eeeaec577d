"""LatentSync 1.5/1.6's face detector: InsightFace ``buffalo_l`` (SCRFD detection + 2d106det landmarks).

Optional: ``insightface``, ``onnxruntime`` and the model pack are not part of the default install;
the models are read from ``<model_dir>/models/buffalo_l`` and never downloaded here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from latentsync import paths
from latentsync.errors import FaceDetectorUnavailableError
from latentsync.face.detection import FaceDetection, check_frame, insightface_points, native_stderr_silenced

__all__ = ["InsightFaceDetector", "insightface_available"]

INSIGHTFACE_PACK = "buffalo_l"
INSIGHTFACE_FILES = ("det_10g.onnx", "2d106det.onnx")
INSIGHTFACE_DET_SIZE = 512


def _insightface_model_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / "models" / INSIGHTFACE_PACK


def insightface_available(model_dir: str | Path = paths.AUXILIARY_DIR) -> bool:
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
        model_dir: str | Path = paths.AUXILIARY_DIR,
        device: str = "cpu",
        min_score: float = 0.5,
        det_size: int = INSIGHTFACE_DET_SIZE,
        show_native_logs: bool = False,
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
        with native_stderr_silenced(not show_native_logs), contextlib.redirect_stdout(sys.stderr):
            self._prepare(FaceAnalysis, model_dir, device, min_score, det_size)

    def _prepare(self, face_analysis, model_dir: str | Path, device: str, min_score: float, det_size: int) -> None:
        on_cuda = str(device).startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_cuda else ["CPUExecutionProvider"]
        ctx_id = (int(str(device).split(":")[1]) if ":" in str(device) else 0) if on_cuda else -1
        self.min_score = min_score
        self._app = face_analysis(
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
        frame = check_frame(frame)
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

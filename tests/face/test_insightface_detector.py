"""The InsightFace back-end with a stand-in ``insightface`` package: missing package or models, filtering."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from latentsync.errors import FaceDetectorUnavailableError, LatentSyncError
from latentsync.face.detection import insightface_points, make_face_detector
from latentsync.face.insightface_detector import InsightFaceDetector, insightface_available


def test_insightface_unavailable(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "insightface", None)  # makes the import fail
    with pytest.raises(FaceDetectorUnavailableError, match="insightface==0.7.3") as info:
        InsightFaceDetector(model_dir=tmp_path)
    assert isinstance(info.value, LatentSyncError)
    assert "mediapipe" in str(info.value)


def fake_insightface(monkeypatch, faces):
    """Install a stand-in ``insightface.app.FaceAnalysis`` returning ``faces``."""
    app = types.ModuleType("insightface.app")

    class FaceAnalysis:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def prepare(self, ctx_id, det_size):
            self.prepared = (ctx_id, det_size)

        def get(self, frame):
            return faces

    app.FaceAnalysis = FaceAnalysis
    package = types.ModuleType("insightface")
    package.app = app
    monkeypatch.setitem(sys.modules, "insightface", package)
    monkeypatch.setitem(sys.modules, "insightface.app", app)


def test_insightface_models_missing_and_filtering(monkeypatch, tmp_path):
    lmk = np.tile(np.arange(106, dtype=np.float64)[:, None], (1, 2))
    good = types.SimpleNamespace(bbox=np.array([10, 10, 110, 150.0]), det_score=0.9, landmark_2d_106=lmk)
    small = types.SimpleNamespace(bbox=np.array([0, 0, 40, 60.0]), det_score=0.99, landmark_2d_106=lmk)
    weak = types.SimpleNamespace(bbox=np.array([200, 10, 320, 150.0]), det_score=0.3, landmark_2d_106=lmk)
    fake_insightface(monkeypatch, [small, good, weak])

    with pytest.raises(FaceDetectorUnavailableError, match="det_10g.onnx, 2d106det.onnx"):
        InsightFaceDetector(model_dir=tmp_path)

    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    for name in ("det_10g.onnx", "2d106det.onnx"):
        (pack / name).write_bytes(b"")
    assert insightface_available(tmp_path)
    detector = make_face_detector("auto", model_dir=tmp_path)
    assert isinstance(detector, InsightFaceDetector)
    assert detector._app.kwargs["root"] == str(tmp_path)
    assert detector._app.prepared == (-1, (512, 512))
    faces = detector.detect(np.zeros((200, 400, 3), np.uint8))
    assert len(faces) == 1 and faces[0].box == (10.0, 10.0, 110.0, 150.0)
    np.testing.assert_allclose(faces[0].landmarks, insightface_points(lmk))

"""What every back-end shares: the alignment points from each landmark model, and building a detector by name."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from latentsync.errors import ConfigError, FaceDetectorUnavailableError
from latentsync.face import mediapipe_detector
from latentsync.face.detection import insightface_points, make_face_detector


def test_insightface_points_rounds_then_averages():
    lmk = np.zeros((106, 2))
    lmk[[43, 48, 49, 51, 50]] = [[10.4, 20.6], [11.6, 20.4], [12, 21], [13, 21], [14, 22]]
    lmk[101:106] = [[50, 20], [51, 20], [52, 20], [53, 20], [54.6, 20]]
    lmk[[74, 77, 83, 86]] = [[30, 40], [31, 41], [32, 42], [33.5, 43]]
    points = insightface_points(lmk)
    # (10+12+12+13+14)/5, (21+20+21+21+22)/5; 54.6 -> 55; 33.5 -> 34 (round half to even)
    np.testing.assert_allclose(points, [[12.2, 21.0], [52.2, 20.0], [31.75, 41.5]])
    with pytest.raises(ValueError):
        insightface_points(np.zeros((68, 2)))


def test_make_face_detector(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "insightface", None)
    with pytest.raises(ConfigError, match="auto, insightface, mediapipe"):
        make_face_detector("dlib")
    with pytest.raises(FaceDetectorUnavailableError):
        make_face_detector("insightface", model_dir=tmp_path)
    monkeypatch.setattr(mediapipe_detector, "MediapipeFaceDetector", lambda: "mediapipe")
    assert make_face_detector("auto", model_dir=tmp_path) == "mediapipe"

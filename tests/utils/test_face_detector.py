"""Face detection backends and the tracker, on real images made in the test (skimage astronaut)."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest
import skimage.data

from latentsync.errors import ConfigError, LatentSyncError
from latentsync.utils import face_detector as fd
from latentsync.utils.face_detector import (
    FaceDetection,
    FaceDetectorUnavailableError,
    FaceTracker,
    InsightFaceDetector,
    MediapipeFaceDetector,
    insightface_points,
    make_face_detector,
)
from tests.conftest import load_golden

# Offset of the golden crop astronaut()[24:216, 131:323] inside the full image, as (x, y).
CROP_OFFSET = np.array([131, 24])


@pytest.fixture(scope="module")
def detector():
    with MediapipeFaceDetector() as det:
        yield det


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def head(image: np.ndarray, size: int) -> np.ndarray:
    """The astronaut's head and shoulders, resized to size x size."""
    return cv2.resize(image[0:260, 100:360], (size, size), interpolation=cv2.INTER_AREA)


def two_people(image: np.ndarray, left: int, right: int) -> np.ndarray:
    """A wide grey frame with two copies of the head, centred at x=140 and x=420."""
    canvas = np.full((280, 560, 3), 200, np.uint8)
    for cx, size in ((140, left), (420, right)):
        x0, y0 = cx - size // 2, 140 - size // 2
        canvas[y0 : y0 + size, x0 : x0 + size] = head(image, size)
    return canvas


def test_astronaut_landmarks_match_golden(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    # The golden landmarks are the full-image FaceMesh points rounded and shifted into the crop.
    golden = load_golden("affine.pt")["inputs"]["landmarks"].numpy()
    np.testing.assert_allclose(face.landmarks - CROP_OFFSET, golden, atol=2.0)
    x1, y1, x2, y2 = face.box
    assert x1 < face.landmarks[:, 0].min() and x2 > face.landmarks[:, 0].max()
    assert y1 < face.landmarks[:, 1].min() < face.landmarks[:, 1].max() < y2
    assert 0.5 <= face.score <= 1.0

    tracked = detector.detect_batch([astronaut, astronaut])
    assert [len(f) for f in tracked] == [1, 1]
    np.testing.assert_allclose(tracked[1][0].landmarks - CROP_OFFSET, golden, atol=2.0)


def test_blank_image_has_no_face(detector):
    assert detector.detect(np.zeros((256, 256, 3), np.uint8)) == []
    assert detector.detect_batch([np.full((128, 128, 3), 255, np.uint8)]) == [[]]


def test_rejects_non_rgb_uint8(detector):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((64, 64, 3), np.float32))


def test_tracker_on_two_people(detector, astronaut):
    frame = two_people(astronaut, 240, 130)
    faces = detector.detect(frame)
    assert len(faces) == 2

    largest = FaceTracker().track([frame], detector)[0]
    assert largest is not None and largest.center[0] < 280
    second = FaceTracker(face_index=1).track([frame], detector)[0]
    assert second is not None and second.center[0] > 280
    assert FaceTracker(face_index=2).track([frame], detector) == [None]

    # The two swap sizes over the clip; the tracker stays with whoever it picked first.
    sizes = np.linspace(240, 130, 6).astype(int)
    clip = [two_people(astronaut, int(a), int(b)) for a, b in zip(sizes, sizes[::-1])]
    for face_index, side in ((None, "left"), (1, "right")):
        chosen = FaceTracker(face_index=face_index).track(clip, detector)
        assert all(face is not None for face in chosen)
        assert all((face.center[0] < 280) == (side == "left") for face in chosen), side


def box_face(x1: float, y1: float, x2: float, y2: float) -> FaceDetection:
    return FaceDetection((x1, y1, x2, y2), np.zeros((3, 2)), 0.9)


def test_tracker_gaps_and_reacquire():
    a, b = box_face(0, 0, 100, 100), box_face(300, 0, 350, 50)
    tracker = FaceTracker(reacquire_after=3)
    assert tracker.update([b, a]) is a  # largest
    moved = box_face(60, 10, 160, 110)  # IoU with a 0.22, centre moved 0.61 box sizes
    assert tracker.update([moved, b]) is None  # too far for the first miss-free frame
    assert tracker.update([]) is None
    assert tracker.update([moved, b]) is moved  # tolerance grows while the target is missing
    assert tracker.update([box_face(65, 10, 165, 110), b]).box[0] == 65
    for _ in range(3):
        assert tracker.update([b]) is None  # the other person is not taken over
    assert tracker.update([b]) is b  # ... until the target is re-acquired afresh
    tracker.reset()
    assert tracker.update([a, b]) is a
    with pytest.raises(ConfigError):
        FaceTracker(face_index=-1)


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
    assert fd.insightface_available(tmp_path)
    detector = make_face_detector("auto", model_dir=tmp_path)
    assert isinstance(detector, InsightFaceDetector)
    assert detector._app.kwargs["root"] == str(tmp_path)
    assert detector._app.prepared == (-1, (512, 512))
    faces = detector.detect(np.zeros((200, 400, 3), np.uint8))
    assert len(faces) == 1 and faces[0].box == (10.0, 10.0, 110.0, 150.0)
    np.testing.assert_allclose(faces[0].landmarks, insightface_points(lmk))


def test_make_face_detector(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "insightface", None)
    with pytest.raises(ConfigError, match="auto, insightface, mediapipe"):
        make_face_detector("dlib")
    with pytest.raises(FaceDetectorUnavailableError):
        make_face_detector("insightface", model_dir=tmp_path)
    monkeypatch.setattr(fd, "MediapipeFaceDetector", lambda: "mediapipe")
    assert make_face_detector("auto", model_dir=tmp_path) == "mediapipe"

"""FaceTracker and identity breaks: following one person, on the MediaPipe detector and on scripted boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from latentsync.errors import ConfigError
from latentsync.face.detection import FaceDetection
from latentsync.face.tracking import FaceTracker, identity_breaks


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


def test_identity_breaks_counts_jumps_across_gaps():
    a = box_face(0, 0, 100, 100)
    near = box_face(20, 10, 120, 110)
    far = box_face(300, 0, 400, 100)
    small = box_face(10, 10, 50, 50)
    assert identity_breaks([a, near, None, near, a]) == 0
    assert identity_breaks([a, None, None, far, far]) == 1
    assert identity_breaks([a, small, a]) == 2
    assert identity_breaks([None, None]) == 0

"""Tracking, shot cuts and crops of the SyncNet metric on constructed detections and frames."""

import cv2
import numpy as np
import pytest

from latentsync.metrics.face_tracks import TrackSettings, content_change, crop_face, track_faces

SETTINGS = TrackSettings(min_track=10, num_failed_det=3, min_face_size=50)


def _face(x: float, y: float = 50.0, size: float = 100.0, score: float = 0.99) -> np.ndarray:
    return np.array([x, y, x + size, y + size, score])


def test_one_face_with_gaps_becomes_one_interpolated_track():
    faces = [[_face(10 + i)] if i not in (5, 6) else [] for i in range(30)]  # two missed frames
    (track,) = track_faces(faces, first_frame=100, settings=SETTINGS)
    np.testing.assert_array_equal(track.frames, np.arange(100, 130))
    assert track.boxes[5, 0] == pytest.approx(15.0) and track.boxes[6, 0] == pytest.approx(16.0)  # interpolated


def test_a_long_gap_splits_and_short_or_small_tracks_are_dropped():
    faces = [[_face(10)] if i < 15 or i >= 20 else [] for i in range(40)]  # 5 missed > num_failed_det 3
    tracks = track_faces(faces, 0, SETTINGS)
    assert [(t.start, t.end) for t in tracks] == [(0, 15), (20, 40)]
    assert track_faces(faces[:10], 0, SETTINGS) == []  # 10 detections: not more than min_track
    small = [[_face(10, size=40)] for _ in range(30)]
    assert track_faces(small, 0, SETTINGS) == []  # 40 px < min_face_size


def test_two_faces_make_two_tracks_and_a_jump_breaks_the_overlap():
    faces = [[_face(0), _face(300)] for _ in range(20)]
    tracks = track_faces(faces, 0, SETTINGS)
    assert sorted(t.boxes[0, 0] for t in tracks) == [0, 300]
    jumping = [[_face(0 if i < 15 else 80)] for i in range(30)]  # IoU 0.11 at the jump
    assert [(t.start, t.end) for t in track_faces(jumping, 0, SETTINGS)] == [(0, 15), (15, 30)]


def _reference_crop(frame, half, x, y, scale):
    # The reference: pad the whole frame with 110, cut, resize to 224.
    pad = int(half * (1 + 2 * scale))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=110)
    my, mx = y + pad, x + pad
    face = padded[int(my - half) : int(my + half * (1 + 2 * scale)), int(mx - half * (1 + scale)) : int(mx + half * (1 + scale))]
    return cv2.resize(face, (224, 224))


@pytest.mark.parametrize("half,x,y", [(30, 80, 60), (50, 10, 5), (200, 80, 60), (33.3, 150.7, 110.2)])
def test_crop_equals_the_padded_frame_crop(half, x, y):
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_face(frame, half, x, y, 0.4), _reference_crop(frame, half, x, y, 0.4))


def test_content_change_sees_cuts():
    rng = np.random.default_rng(0)
    a = cv2.cvtColor(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), cv2.COLOR_RGB2HSV)
    assert content_change(a, a) == 0
    other = cv2.cvtColor(np.full((64, 64, 3), (20, 200, 40), np.uint8), cv2.COLOR_RGB2HSV)
    assert content_change(a, other) > TrackSettings().scene_threshold > content_change(a, a)

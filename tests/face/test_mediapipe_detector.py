"""The MediaPipe back-end on a real image made in the test (skimage astronaut), against the golden landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_golden

# Offset of the golden crop astronaut()[24:216, 131:323] inside the full image, as (x, y).
CROP_OFFSET = np.array([131, 24])


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


def test_batches_of_one_run_are_tracked_as_one_sequence(detector):
    """Frames handed over in FrameBatches of one run get exactly the landmarks of one long batch; a
    fresh run (or a plain list) restarts tracking, which measures its first frame differently."""
    from latentsync.face.detection import FrameBatch
    from tools.synthetic_media import panning_face

    frames = list(panning_face(12, (270, 480)))
    whole = detector.detect_batch(frames)
    run = object()
    parts = detector.detect_batch(FrameBatch(frames[:5], run)) + detector.detect_batch(FrameBatch(frames[5:], run))
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
    restarted = detector.detect_batch(FrameBatch(frames[5:], object()))
    assert np.abs(restarted[0][0].landmarks - whole[5][0].landmarks).max() > 0.1
    np.testing.assert_array_equal(detector.detect_batch(frames[5:])[0][0].landmarks, restarted[0][0].landmarks)

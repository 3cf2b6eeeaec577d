"""FaceAligner: the track -> align -> resize -> restore stage, against the golden crop and on a stream."""

from __future__ import annotations

import numpy as np
import torch

from latentsync.utils.face_alignment import AlignedFrame, FaceAligner, identity_breaks
from latentsync.utils.face_detector import FaceDetection
from tests.conftest import load_golden
from tests.utils.test_affine_transform import assert_image_close, assert_matrix_close


class ScriptedDetector:
    """Test double: returns a fixed list of faces per call, in order; counts frames and batches."""

    def __init__(self, per_frame: list[list[FaceDetection]]) -> None:
        self.per_frame = list(per_frame)
        self.batches: list[int] = []

    def detect_batch(self, frames, consecutive=True):
        frames = list(frames)
        self.batches.append(len(frames))
        out, self.per_frame = self.per_frame[: len(frames)], self.per_frame[len(frames) :]
        return out


def _golden():
    golden = load_golden("affine.pt")
    return golden["inputs"]["image"].numpy(), golden["inputs"]["landmarks"].numpy(), golden["outputs"]


def _face(landmarks: np.ndarray, box=(0.0, 0.0, 100.0, 100.0)) -> FaceDetection:
    return FaceDetection(tuple(box), np.asarray(landmarks, np.float64), 0.9)


def test_align_matches_golden_crop_and_resize():
    image, landmarks, out = _golden()
    aligner = FaceAligner(resolution=256, smooth=False)
    aligned = aligner.align(image, _face(landmarks))
    assert aligned.found and aligned.face.shape == (256, 256, 3)
    assert_image_close(aligned.face, out["face_256_lanczos_256x256"])
    assert_matrix_close(aligned.matrix, out["matrix_256"])
    # With smoothing (the default) the crop follows upstream's smoothed sequence.
    smoothed = FaceAligner(resolution=256)
    for k in range(3):
        landmarks_k = out["smooth_landmarks"][k].numpy()
        assert_matrix_close(smoothed.align(image, _face(landmarks_k)).matrix, out["smooth_matrices"][k])
    missing = aligner.align(image, None)
    assert not missing.found and missing.matrix is None and missing.frame is image


def test_stream_tracks_in_batches_and_flags_missing_frames():
    image, landmarks, out = _golden()
    frames = [image] * 7
    # Frames 2 and 5 have no face; frame 4 has a second, smaller face the tracker must ignore.
    other = _face(landmarks + 40, box=(40.0, 40.0, 60.0, 60.0))
    script = [[_face(landmarks)] for _ in frames]
    script[2] = script[5] = []
    script[4] = [other, _face(landmarks)]
    detector = ScriptedDetector(script)
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=3)
    stream = aligner.align_frames(iter(frames))
    first = next(stream)  # streamed: only the first batch has been detected so far
    assert detector.batches == [3]
    result = [first, *stream]
    assert detector.batches == [3, 3, 1]
    assert [a.found for a in result] == [True, True, False, True, True, False, True]
    assert all(a.detection.box == (0.0, 0.0, 100.0, 100.0) for a in result if a.found)

    # Given the detections of an earlier pass, the same crops come out without a detector.
    again = FaceAligner(resolution=256)
    replay = list(again.align_frames(frames, [a.detection for a in result]))
    for a, b in zip(result, replay):
        assert a.found == b.found
        if a.found:
            np.testing.assert_array_equal(a.face, b.face)
            assert_matrix_close(a.matrix, torch.from_numpy(b.matrix))


def test_restore_puts_the_unchanged_face_back():
    image, landmarks, _ = _golden()
    aligner = FaceAligner(resolution=256)
    aligned = aligner.align(image, _face(landmarks))
    face = torch.from_numpy(aligned.face).permute(2, 0, 1).float() / 127.5 - 1
    restored = aligner.restore(aligned, face)
    assert restored.shape == image.shape and restored.dtype == np.uint8
    # Resizing twice blurs a little: the face region comes back within a few grey levels on average.
    x1, y1, x2, y2 = 60, 60, 130, 150
    diff = np.abs(restored[y1:y2, x1:x2].astype(int) - image[y1:y2, x1:x2].astype(int))
    assert diff.mean() < 6, diff.mean()
    # A face painted black comes back dark where the face was, and the corners stay untouched.
    dark = aligner.restore(aligned, -torch.ones_like(face))
    assert dark[y1:y2, x1:x2].mean() < 20
    np.testing.assert_array_equal(dark[:5, :5], image[:5, :5])
    # A frame without a face passes through.
    assert aligner.restore(AlignedFrame(image, None, None), face) is image


def test_identity_breaks_counts_jumps_across_gaps():
    a = _face(np.zeros((3, 2)), box=(0, 0, 100, 100))
    near = _face(np.zeros((3, 2)), box=(20, 10, 120, 110))
    far = _face(np.zeros((3, 2)), box=(300, 0, 400, 100))
    small = _face(np.zeros((3, 2)), box=(10, 10, 50, 50))
    assert identity_breaks([a, near, None, near, a]) == 0
    assert identity_breaks([a, None, None, far, far]) == 1
    assert identity_breaks([a, small, a]) == 2
    assert identity_breaks([None, None]) == 0

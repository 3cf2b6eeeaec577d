"""FaceAligner: the track -> align -> resize -> restore stage, against the golden crop and on a stream."""

from __future__ import annotations

import numpy as np
import torch

from latentsync.face.alignment import AlignedFrame, FaceAligner, FaceStageOptions
from latentsync.face.detection import FaceDetection
from tests.conftest import load_golden
from tests.face.test_warp import assert_image_close, assert_matrix_close


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
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=3, options=FaceStageOptions(detect_every=1))
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


class KeyedDetector:
    """Test double: frame i is filled with the value i; returns ``script[i]`` in the pixels of the frame it
    is given (the script is in ``full_width``-wide pixels); records the frames of each call."""

    def __init__(self, script: list[list[FaceDetection]], full_width: int) -> None:
        self.script, self.full_width = script, full_width
        self.calls: list[list[int]] = []
        self.widths: set[int] = set()

    def detect_batch(self, frames, consecutive=True):
        frames = list(frames)
        self.calls.append([int(frame[0, 0, 0]) for frame in frames])
        self.widths |= {frame.shape[1] for frame in frames}
        shrink = frames[0].shape[1] / self.full_width
        return [
            [FaceDetection(tuple(np.array(f.box) * shrink), f.landmarks * shrink, f.score) for f in self.script[i]]
            for i in self.calls[-1]
        ]


def test_sparse_detection_interpolates_between_key_frames_of_shrunk_frames():
    _, landmarks, _ = _golden()
    frames = [np.full((120, 200, 3), i, np.uint8) for i in range(12)]
    # The face moves 2 px right and 1 px down per frame; frame 8 has none.
    script = [[_face(landmarks + [2 * i, i], box=(2 * i, i, 100 + 2 * i, 100 + i))] for i in range(12)]
    script[8] = []
    detector = KeyedDetector(script, full_width=200)
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=12, options=FaceStageOptions(5, 100))
    tracked = [d for _, d in aligner.track(frames)]
    # Only key frames 0, 5, 10 and the video's last go to the detector, shrunk to 100 px; the face is
    # found at 5 and 10, so 6..9 are interpolated (frame 8 included) and come out in full-size pixels.
    assert detector.calls == [[0, 5, 10], [11]] and detector.widths == {100}
    for i in range(12):
        np.testing.assert_allclose(tracked[i].landmarks, landmarks + [2 * i, i], atol=1e-9)
        np.testing.assert_allclose(tracked[i].box, (2 * i, i, 100 + 2 * i, 100 + i), atol=1e-9)
    assert np.isnan(tracked[1].score) and tracked[5].score == 0.9  # interpolated frames have no score

    # Key frames are the video's, not the batch's: in batches of 4 the same frames are detected (one
    # sequence for the detector) and the interpolation runs across batch boundaries.
    detector = KeyedDetector(script, full_width=200)
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=4, options=FaceStageOptions(5, 100))
    in_batches = [d for _, d in aligner.track(frames)]
    assert detector.calls == [[0], [5], [10], [11]]
    for a, b in zip(tracked, in_batches):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-12)

    # The face missing at a key frame: the frames around it are detected one by one instead.
    script[10] = []
    detector = KeyedDetector(script, full_width=200)
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=12, options=FaceStageOptions(5, None))
    tracked = [d for _, d in aligner.track(frames)]
    assert detector.calls == [[0, 5, 10], [6, 7, 8, 9], [11]] and detector.widths == {200}
    assert [d is not None for d in tracked] == [True] * 8 + [False, True, False, True]
    np.testing.assert_allclose(tracked[9].landmarks, landmarks + [18, 9], atol=1e-9)
    assert tracked[9].score == 0.9

    # No face at two key frames in a row: the frames between them are not detected.
    script[5] = []
    detector = KeyedDetector(script, full_width=200)
    aligner = FaceAligner(resolution=256, detector=detector, batch_size=12, options=FaceStageOptions(5, None))
    tracked = [d for _, d in aligner.track(frames)]
    assert detector.calls == [[0, 5, 10], [1, 2, 3, 4], [11]]
    assert [d is not None for d in tracked] == [True] * 5 + [False] * 6 + [True]


def test_sparse_detection_of_a_moving_face_is_as_close_to_its_motion_as_every_frame(tmp_path):
    """MediaPipe on every full frame vs every 5th frame at half size: landmark error against the true motion."""
    from latentsync.face.mediapipe_detector import MediapipeFaceDetector
    from latentsync.media.reader import VideoReader
    from tools.synthetic_media import _drift, write_talking_video

    width, height, fps = 270, 480, 25
    audio = np.sin(np.linspace(0, 300, 16000 * 2)).astype(np.float32) * 0.3
    path = tmp_path / "moving.mp4"
    write_talking_video(path, audio, size=(width, height), with_audio=False)
    reader = VideoReader(path)
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, 3)  # write_talking_video's seed 0
    motion = [_drift(i, fps, phases, "gentle") for i in range(len(reader))]
    scale = np.array([s for _, _, s in motion])[:, None, None]
    shift = np.array([[width / 2 * (1 - s) + dx * width, height / 2 * (1 - s) + dy * height] for dx, dy, s in motion])
    shift = shift[:, None, :]

    def landmarks(every: int, max_side: int | None) -> np.ndarray:
        with MediapipeFaceDetector() as detector:
            aligner = FaceAligner(detector=detector, options=FaceStageOptions(every, max_side))
            frames = reader.frames(max_side)
            return np.stack([d.landmarks for _, d in aligner.track(frames, frame_size=(width, height))])

    dense, sparse, shrunk = landmarks(1, None), landmarks(5, None), landmarks(5, 240)
    # The still photo's points, fitted to the dense detections; the truth moves them with the frame.
    truth = scale * ((dense - shift) / scale).mean(0) + shift
    dense_error, sparse_error, shrunk_error = (np.linalg.norm(x - truth, axis=-1) for x in (dense, sparse, shrunk))
    # Measured (mean, max px): every frame (0.64, 2.14); every 5th (0.58, 2.14); every 5th at half size
    # (1.23, 3.71): a 60-pixel face is small for FaceMesh; the default shrinks 1080x1920 to 960, where
    # it costs ~0.3 px on a 500-pixel face (benchmarks/RESULTS.md).
    assert sparse_error.mean() <= dense_error.mean() + 0.5
    assert sparse_error.max() <= dense_error.max() + 2.0  # the golden landmark tolerance, in pixels
    assert shrunk_error.mean() <= dense_error.mean() + 1.0
    assert shrunk_error.max() <= dense_error.max() + 2.0


# Changes between consecutive frames i -> i + 1 at the 64-frame detection batch boundaries of 200 frames.
BATCH_BOUNDARIES = [63, 127, 191]


def assert_no_seams(changes: np.ndarray, reach: int = 3) -> None:
    """The crop changes at the batch boundaries are no larger than the largest change away from them
    (``reach`` frames or more), and the changes near them are as large as elsewhere on average."""
    near = sorted({i for b in BATCH_BOUNDARIES for i in range(b - reach + 1, b + reach + 1)})
    elsewhere = np.delete(changes, near)
    report = (changes[BATCH_BOUNDARIES].round(2), changes[near].mean(), np.percentile(elsewhere, [50, 90, 100]))
    assert changes[BATCH_BOUNDARIES].max() <= elsewhere.max(), report
    assert changes[near].mean() <= 1.25 * elsewhere.mean(), report


def test_crops_do_not_jump_at_detection_batch_boundaries():
    """A face panning and zooming smoothly across three detection batches, on inference's path
    (shrunk copies tracked, full 1080x1920 frames aligned): the crops change no more near a batch
    boundary than elsewhere. Before the fix (a fresh FaceMesh graph and fresh key frames for each
    batch) the changes at the boundaries were 11.9, 8.6 and 5.2 grey levels, against at most 2.9
    elsewhere; now 2.0, 0.8 and 0.5, against at most 2.8."""
    import cv2

    from latentsync.face.mediapipe_detector import MediapipeFaceDetector
    from preprocess.align_faces import crop_changes
    from tools.synthetic_media import panning_face

    size, shrunk_size, n = (1080, 1920), (540, 960), 200

    def track(batch_size: int) -> list:
        aligner = FaceAligner(resolution=256, detector=detector, batch_size=batch_size)
        shrunk = (cv2.resize(f, shrunk_size, interpolation=cv2.INTER_AREA) for f in panning_face(n, size))
        return [d for _, d in aligner.track(shrunk, frame_size=size)]

    with MediapipeFaceDetector() as detector:
        detections = track(64)
        assert all(d is not None for d in detections)
        # Batching leaves no trace at all: the same detections as with the whole video in one batch
        # (before, the boundaries were measured afresh, ~2-4 px off).
        np.testing.assert_array_equal(np.stack([d.landmarks for d in detections]),
                                      np.stack([d.landmarks for d in track(n)]))
    crops = [a.face for a in FaceAligner(resolution=256).align_frames(panning_face(n, size), detections)]
    assert_no_seams(crop_changes(crops))

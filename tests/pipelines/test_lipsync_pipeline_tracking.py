"""The pipeline's face pass hands the detector one tracking sequence per video (issue 21: crops no
longer re-frame at the 64-frame detection batches)."""

from __future__ import annotations

from latentsync.face.detection import FrameBatch
from latentsync.face.mediapipe_detector import MediapipeFaceDetector
from tests.pipelines.test_lipsync_pipeline import _sync_video, pipe  # noqa: F401  (module fixture)
from tests.scripts.test_inference import media  # noqa: F401  (module fixture: a 3 s talking head + speech)


def test_key_frames_of_a_video_reach_the_detector_as_one_run(pipe, media, tmp_path, monkeypatch):  # noqa: F811
    detect_batch = MediapipeFaceDetector.detect_batch
    calls = []

    def recording(self, frames, consecutive=True):
        calls.append((frames.run if isinstance(frames, FrameBatch) else None, len(frames)))
        return detect_batch(self, frames, consecutive)

    monkeypatch.setattr(MediapipeFaceDetector, "detect_batch", recording)
    _sync_video(pipe, media, tmp_path / "first.mp4")
    first = [run for run, _ in calls if run is not None]
    # 75 frames in batches of 64: key frames 0, 5, ..., 70 and the last, in two batches and the
    # end, all of one run (the detector's tracking carries over); gaps around the three blank
    # frames are detected as plain lists.
    assert len(first) == 3 and len(set(first)) == 1
    assert sum(n for run, n in calls if run is not None) == 16
    calls.clear()
    _sync_video(pipe, media, tmp_path / "second.mp4")
    second = {run for run, _ in calls if run is not None}
    assert len(second) == 1 and second.isdisjoint(first)  # a new video starts a new run

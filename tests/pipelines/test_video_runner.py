"""The video runner on tiny random-weight models (CPU): overlapped stages, errors in its threads, a video
without a face, and two jobs with different settings sharing one loaded pipeline at once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from latentsync.errors import NoFaceError
from latentsync.media.reader import VideoReader
from latentsync.media.writer import ARCHIVAL_ENCODING, VideoWriter
from latentsync.pipelines import face_pass, video_runner
from latentsync.pipelines.video_runner import sync_video
from latentsync.settings import InferenceSettings
from tests.scripts.test_inference import media  # noqa: F401  (module fixture: a 3 s talking head + speech)
from tests.tiny_models import tiny_pipeline

JOIN_SECONDS = 600  # a thread still running after this is a hang, not a slow machine


@pytest.fixture(scope="module")
def pipe(tiny_models):
    pipeline = tiny_pipeline(tiny_models)
    yield pipeline
    pipeline.face_detector.close()


def _settings(media, out: Path, **changes) -> InferenceSettings:
    """configs/inference.yaml's settings for the test video, 2 DDIM steps without deep cache, unless ``changes``."""
    options = dict(video_path=media["video"], audio_path=media["audio"], video_out_path=out, temp_dir=out.parent,
                   inference_steps=2, enable_deepcache=False, seed=5)
    return InferenceSettings.from_config(**{**options, **changes})


class _RecordingWriter(VideoWriter):
    """The runner's encoder, keeping a copy of every frame it is given (the arrays before encoding), per file."""

    frames: dict[str, list[np.ndarray]] = {}

    def write(self, frame: np.ndarray) -> None:
        type(self).frames.setdefault(self.path, []).append(np.array(frame))
        super().write(frame)


def _frames_by_folder(folders: list[Path]) -> list[list[np.ndarray]]:
    """The recorded frames of the one file written under each folder (a job's working folder is under its temp_dir)."""
    found = []
    for folder in folders:
        (frames,) = [f for path, f in _RecordingWriter.frames.items() if Path(path).is_relative_to(folder)]
        found.append(frames)
    return found


def _run_frames(pipe, settings, monkeypatch, **options) -> list[np.ndarray]:
    _RecordingWriter.frames = {}
    monkeypatch.setattr(video_runner, "VideoWriter", _RecordingWriter)
    sync_video(pipe, settings, **options)
    (frames,) = _RecordingWriter.frames.values()
    return frames


# --------------------------------------------------------------------------- overlapped stages


def test_overlapped_stages_write_the_same_frames_as_sequential(pipe, media, tmp_path, monkeypatch):
    # 3 s = 75 frames: five clips, three frames without a face; alignment, denoising and restore overlap.
    sequential = _run_frames(pipe, _settings(media, tmp_path / "sequential.mp4"), monkeypatch, overlap_stages=False)
    overlapped = _run_frames(pipe, _settings(media, tmp_path / "overlapped.mp4"), monkeypatch, overlap_stages=True)
    assert len(sequential) == len(overlapped) == 75
    for a, b in zip(sequential, overlapped):
        np.testing.assert_array_equal(a, b)
    source = list(VideoReader(media["video"]))
    assert max(np.abs(a.astype(int) - s).max() for a, s in zip(sequential, source)) > 20  # mouths were changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlapped.mp4", "sequential.mp4"]  # no leftovers


def test_error_in_the_restore_thread_is_raised_as_is_and_leaves_nothing(pipe, media, tmp_path, monkeypatch):
    error = OSError(28, "No space left on device")

    class FailingWriter(VideoWriter):
        def write(self, frame):
            if self.frames_written == 20:  # in the second clip, while the third is being denoised
                raise error
            super().write(frame)

    monkeypatch.setattr(video_runner, "VideoWriter", FailingWriter)
    before = threading.active_count()
    with pytest.raises(OSError) as caught:
        sync_video(pipe, _settings(media, tmp_path / "out.mp4"))
    assert caught.value is error
    assert list(tmp_path.iterdir()) == []  # no output, no temp file, no work folder
    assert threading.active_count() == before


def test_error_in_the_detection_thread_is_raised_as_is_and_leaves_nothing(pipe, media, tmp_path, monkeypatch):
    error = RuntimeError("detector crashed")
    detect_batch = face_pass.CountingDetector.detect_batch
    seen = []

    def failing(self, frames, consecutive=True):
        seen.append(threading.current_thread().name)
        if len(seen) == 3:  # mid-video, with the sync pass already under way behind it
            raise error
        return detect_batch(self, frames, consecutive)

    monkeypatch.setattr(face_pass.CountingDetector, "detect_batch", failing)
    before = threading.active_count()
    with pytest.raises(RuntimeError) as caught:
        sync_video(pipe, _settings(media, tmp_path / "out.mp4"))
    assert caught.value is error
    assert set(seen) == {"faces"}  # detection ran in its own thread
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before


@pytest.mark.parametrize("overlap_stages", [False, True], ids=["sequential", "overlapped"])
def test_a_video_without_a_face_fails_when_detection_ends_and_leaves_nothing(pipe, media, tmp_path, monkeypatch,
                                                                                 overlap_stages):
    monkeypatch.setattr(face_pass.CountingDetector, "detect_batch", lambda self, frames, consecutive=True:
                        [[] for _ in frames])
    written = []
    monkeypatch.setattr(VideoWriter, "write", lambda self, frame: written.append(frame))
    before = threading.active_count()
    with pytest.raises(NoFaceError, match="no face found in any of the 75 frames"):
        sync_video(pipe, _settings(media, tmp_path / "out.mp4"), overlap_stages=overlap_stages)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before
    if not overlap_stages:
        assert written == []  # detection finished before anything was synced


# --------------------------------------------------------------------------- jobs sharing one pipeline


def test_two_jobs_at_once_on_one_pipeline_give_what_each_gives_alone(pipe, media, tmp_path, monkeypatch):
    """Different sampler, steps, deep cache, guidance, seed, face detection and encoding; run alone, then
    interleaved clip by clip on two threads over the same loaded pipeline (UNet, VAE, Whisper, detector)."""
    jobs = {
        "a": dict(scheduler="ddim", inference_steps=3, enable_deepcache=True, deepcache_interval=2,
                  guidance_scale=1.5, seed=5, detect_every=1, detect_max_side=0),
        "b": dict(scheduler="dpm++", inference_steps=2, enable_deepcache=False, guidance_scale=2.0, seed=9,
                  detect_every=5, detect_max_side=64, archival=True, face_index=0),
    }

    def settings(name: str, round_: str) -> InferenceSettings:
        folder = tmp_path / f"{round_}_{name}"
        folder.mkdir()
        return _settings(media, folder / "out.mp4", **jobs[name])

    _RecordingWriter.frames = {}
    monkeypatch.setattr(video_runner, "VideoWriter", _RecordingWriter)
    encodings = []
    monkeypatch.setattr(video_runner, "video_encoding",
                        lambda s, encoding=video_runner.video_encoding: encodings.append(encoding(s)) or encodings[-1])
    for name in jobs:
        sync_video(pipe, settings(name, "alone"))
    alone = _frames_by_folder([tmp_path / "alone_a", tmp_path / "alone_b"])

    # Together: each job waits for the other at every finished clip, so their clips alternate while
    # both runs, with their detection, alignment and restore threads, are live at the same time.
    lockstep = threading.Barrier(2, timeout=JOIN_SECONDS)
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        def progress(stage, done, total):
            if stage == "denoise" and done > 0:
                lockstep.wait()

        try:
            sync_video(pipe, settings(name, "together"), progress=progress)
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors[name] = err
            lockstep.abort()

    threads = [threading.Thread(target=run, args=(name,), name=f"job-{name}") for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a job hung"
    assert errors == {}
    together = _frames_by_folder([tmp_path / "together_a", tmp_path / "together_b"])

    for name, solo, shared in zip(jobs, alone, together):
        assert len(solo) == len(shared) == 75, name
        for k, (x, y) in enumerate(zip(solo, shared)):
            np.testing.assert_array_equal(x, y, err_msg=f"job {name}, frame {k}")
    # The jobs really differ, and each got its own encoding.
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(*alone)) > 10
    assert encodings.count(ARCHIVAL_ENCODING) == 2 and len(encodings) == 4

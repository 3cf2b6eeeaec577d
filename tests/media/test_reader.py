"""VideoReader on files made in the test: resampling to 25 fps by timestamp, streaming, shrinking, rotation."""

from __future__ import annotations

import cv2
import numpy as np

from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from tests.media.media_files import frame_index, run_ffmpeg_cli, write_grey_video


def test_reader_resamples_30fps_to_25fps_lazily(tmp_path):
    path = tmp_path / "thirty.mp4"
    n_source = 30  # 1.0 s at 30 fps
    write_grey_video(path, n_source, 30)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height, info.has_audio) == (30, 30.0, 64, 48, False)

    reader = VideoReader(path, fps=25)
    assert len(reader) == 25

    decoded = []
    original = reader._source_frames

    def counting():
        for item in original():
            decoded.append(item[0])
            yield item

    reader._source_frames = counting
    frames = iter(reader)
    first = [next(frames) for _ in range(5)]
    assert len(decoded) < 10, "the reader decoded ahead instead of streaming"
    frames = first + list(frames)
    assert len(frames) == 25
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    # Output frame k shows the source frame on screen at k / 25 s: floor(k * 30 / 25).
    assert [frame_index(f) for f in frames] == [k * 30 // 25 for k in range(25)]
    # A second pass starts over.
    assert [frame_index(f) for f in reader] == [k * 30 // 25 for k in range(25)]


def test_reader_upsamples_and_keeps_25fps_exact(tmp_path):
    path = tmp_path / "twenty.mp4"
    write_grey_video(path, 20, 20)  # 1.0 s
    assert [frame_index(f) for f in VideoReader(path, fps=25)] == [k * 20 // 25 for k in range(25)]
    path25 = tmp_path / "twentyfive.mp4"
    write_grey_video(path25, 13, 25)
    assert [frame_index(f) for f in VideoReader(path25)] == list(range(13))


def test_reader_shrinks_frames_while_converting(tmp_path):
    from tools.synthetic_media import astronaut_face

    path = tmp_path / "face.mp4"
    source = astronaut_face()[:192, :256]
    with VideoWriter(path, 25, 256, 192) as writer:
        for _ in range(3):
            writer.write(source)
    reader = VideoReader(path)
    full = list(reader)
    shrunk = list(reader.frames(max_side=128))
    assert len(shrunk) == 3 and shrunk[0].shape == (96, 128, 3) and shrunk[0].dtype == np.uint8
    expected = cv2.resize(full[0], (128, 96), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk[0].astype(int) - expected).mean() < 4
    assert list(reader.frames(max_side=256))[0].shape == (192, 256, 3)  # already small enough: unchanged
    np.testing.assert_array_equal(list(reader.frames(max_side=256))[0], full[0])

    # A phone video (pixels stored sideways plus a display matrix) shrinks upright too.
    sideways, phone = tmp_path / "sideways.mp4", tmp_path / "phone.mp4"
    run_ffmpeg_cli("-i", str(path), "-vf", "transpose=1", "-c:v", "libx264", "-crf", "12", str(sideways))
    run_ffmpeg_cli("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(phone))
    upright = list(VideoReader(phone).frames(max_side=128))[0]
    assert upright.shape == (96, 128, 3)
    assert np.abs(upright.astype(int) - expected).mean() < 4


def test_synthetic_talking_video(tmp_path):
    """The dev helper other tests build on: speech-length video, audio track, blank frames, mouth boxes."""
    import shutil

    from tools.synthetic_media import loudness_envelope, speak, write_talking_video

    if shutil.which("espeak-ng"):
        audio = speak("Hello.", tmp_path / "hello.wav")
    else:  # pragma: no cover - espeak-ng comes from apt
        audio = (0.2 * np.sin(np.arange(16000) * 0.1)).astype(np.float32)
    assert audio.dtype == np.float32 and len(audio) > 4000

    path = tmp_path / "talk.mp4"
    meta = write_talking_video(path, audio, size=(96, 80), blank_frames=[1])
    n = meta["num_frames"]
    assert n == int(np.ceil(len(audio) / 16000 * 25))
    assert len(loudness_envelope(audio)) == n
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (n, 96, 80, True)
    frames = list(VideoReader(path))
    assert frames[1].reshape(-1, 3).std(axis=0).max() < 3 and np.isnan(meta["mouth_boxes"][1]).all()
    x0, y0, x1, y1 = meta["mouth_boxes"][0]
    assert 0 < x0 < x1 < 96 and 0 < y0 < y1 < 80

"""Media I/O on files made in the test: decoding, resampling to 25 fps, writing, muxing, errors."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from latentsync.errors import MediaError
from latentsync.utils.media import (
    ARCHIVAL_ENCODING, FAST_ENCODING, VideoReader, VideoWriter, ffmpeg_exe, load_audio, mux_audio, probe_video,
)

ODD_NAME = "clip with 'quotes'; and \"more\""


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def _write_grey_video(path, n_frames: int, fps: float, size=(64, 48)) -> None:
    """Frame i is a flat grey of level 8 * (i % 32), so a decoded frame tells which source frame it was."""
    width, height = size
    with VideoWriter(path, fps, width, height) as writer:
        for i in range(n_frames):
            writer.write(np.full((height, width, 3), 8 * (i % 32), np.uint8))


def _frame_index(frame: np.ndarray) -> int:
    return int(round(frame.astype(float).mean() / 8))


def test_load_audio_resamples_stereo_mp3_to_16k_mono(tmp_path):
    mp3 = tmp_path / "tone.mp3"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "2", str(mp3))
    audio = load_audio(mp3)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # mp3 adds encoder delay/padding of about one frame (1152 samples at 44.1 kHz).
    assert abs(len(audio) / 16000 - 2.0) < 0.06
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=2)  # 1 Hz bins


def test_load_audio_pcm16_is_exact(tmp_path):
    pcm = (np.arange(-8000, 8000, dtype=np.int64) * 4).astype(np.int16)
    wav = tmp_path / f"{ODD_NAME}.wav"
    wavfile.write(wav, 16000, pcm)
    np.testing.assert_array_equal(load_audio(wav), pcm.astype(np.float32) / 32768)


@pytest.mark.parametrize("name", ["missing.wav", "text.wav", "text.mp4", "silent_video.mp4", "empty.wav"])
def test_load_audio_errors_name_the_file(tmp_path, name):
    path = tmp_path / name
    if name.startswith("text"):
        path.write_text("this is not media\n")
    elif name == "silent_video.mp4":
        _write_grey_video(path, 5, 25)
    elif name == "empty.wav":
        wavfile.write(path, 16000, np.zeros(0, np.int16))
    with pytest.raises(MediaError, match=str(path).replace("\\", "\\\\").replace(".", r"\.")):
        load_audio(path)


@pytest.mark.parametrize("name", ["missing.mp4", "text.mp4", "audio_only.wav"])
def test_probe_video_errors_name_the_file(tmp_path, name):
    path = tmp_path / name
    if name == "text.mp4":
        path.write_text("this is not media\n")
    elif name == "audio_only.wav":
        wavfile.write(path, 16000, np.zeros(1600, np.int16))
    with pytest.raises(MediaError, match=name.replace(".", r"\.")):
        probe_video(path)
    with pytest.raises(MediaError, match=name.replace(".", r"\.")):
        VideoReader(path)


def test_reader_resamples_30fps_to_25fps_lazily(tmp_path):
    path = tmp_path / "thirty.mp4"
    n_source = 30  # 1.0 s at 30 fps
    _write_grey_video(path, n_source, 30)
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
    assert [_frame_index(f) for f in frames] == [k * 30 // 25 for k in range(25)]
    # A second pass starts over.
    assert [_frame_index(f) for f in reader] == [k * 30 // 25 for k in range(25)]


def test_reader_upsamples_and_keeps_25fps_exact(tmp_path):
    path = tmp_path / "twenty.mp4"
    _write_grey_video(path, 20, 20)  # 1.0 s
    assert [_frame_index(f) for f in VideoReader(path, fps=25)] == [k * 20 // 25 for k in range(25)]
    path25 = tmp_path / "twentyfive.mp4"
    _write_grey_video(path25, 13, 25)
    assert [_frame_index(f) for f in VideoReader(path25)] == list(range(13))


def test_still_image_is_one_frame(tmp_path):
    import cv2

    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 200  # red in RGB
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), image[:, :, ::-1])
    reader = VideoReader(path)
    frames = list(reader)
    assert len(reader) == 1 and len(frames) == 1
    np.testing.assert_array_equal(frames[0], image)
    assert probe_video(path).is_image


def test_write_mux_round_trip_with_odd_size_and_odd_path(tmp_path):
    folder = tmp_path / ODD_NAME
    folder.mkdir()
    video = folder / f"{ODD_NAME}.mp4"
    width, height = 65, 49  # odd: padded to 66x50 for yuv420p
    _write_grey_video(video, 50, 25, size=(width, height))  # 2.0 s
    info = probe_video(video)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (50, 66, 50, False)

    audio = folder / f"{ODD_NAME}.wav"
    t = np.arange(int(2.5 * 16000)) / 16000
    wavfile.write(audio, 16000, (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16))

    out = folder / f"out {ODD_NAME}.mp4"
    mux_audio(video, audio, out)
    muxed = probe_video(out)
    assert muxed.has_audio and muxed.num_frames == 50 and muxed.fps == 25.0
    assert abs(len(load_audio(out)) / 16000 - 2.0) < 0.05  # cut to the video by -shortest
    assert len(VideoReader(out)) == 50
    assert sorted(p.name for p in folder.iterdir()) == sorted([video.name, audio.name, out.name])


def test_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(path, 25, 32, 32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


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
    _ffmpeg("-i", str(path), "-vf", "transpose=1", "-c:v", "libx264", "-crf", "12", str(sideways))
    _ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(phone))
    upright = list(VideoReader(phone).frames(max_side=128))[0]
    assert upright.shape == (96, 128, 3)
    assert np.abs(upright.astype(int) - expected).mean() < 4


def _x264_settings(path) -> str:
    """The settings string libx264 writes into the stream (its user-data SEI)."""
    data = open(path, "rb").read()
    start = data.index(b"x264 - core")
    return data[start : data.index(b"\x00", start)].decode("ascii", "replace")


def test_fast_encoding_keeps_quality_of_archival(tmp_path):
    """The default (fast) libx264 setting stays within codec noise of the archival one on a textured image."""
    from tools.synthetic_media import astronaut_face

    source = [np.roll(astronaut_face()[:192, :256], 3 * i, axis=1) for i in range(6)]
    psnr = {}
    for name, encoding in (("fast", FAST_ENCODING), ("archival", ARCHIVAL_ENCODING)):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, 25, 256, 192, encoding) as writer:
            for frame in source:
                writer.write(frame)
        decoded = np.stack(list(VideoReader(path))).astype(np.float64)
        psnr[name] = 10 * np.log10(255**2 / np.mean((decoded - np.stack(source)) ** 2))
        psnr[name + " settings"] = _x264_settings(path)
    assert "subme=1 " in psnr["fast settings"] and "crf=16.0" in psnr["fast settings"]  # superfast
    assert "subme=8 " in psnr["archival settings"] and "crf=18.0" in psnr["archival settings"]  # slow
    assert psnr["archival"] > 35  # measured 36.0 (fast: 36.9) on this hard texture
    assert psnr["fast"] > psnr["archival"] - 1.0, psnr


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

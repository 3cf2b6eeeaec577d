"""LiveWriter: fragmented MP4 and MPEG-TS files read back, atomic files, pipes whose reader left, a relay whose
server refuses (on a closed port of 127.0.0.1 only), and the format each target gets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from latentsync.errors import ConfigError, OutputError
from latentsync.media.audio import load_audio
from latentsync.media.live import LiveWriter, shown_url, stream_format
from latentsync.utils.files import TEMP_PREFIX

W, H = 96, 64  # not square: a swapped size would show
COLOURS = [(200, 30, 40), (20, 180, 60), (30, 40, 220)]


def _frames(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Flat colour frames (a new colour every 10) and a 440 Hz tone, 640 samples per frame."""
    t = np.arange(count * 640) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return [(np.full((H, W, 3), COLOURS[(k // 10) % 3], np.uint8), tone[640 * k : 640 * (k + 1)]) for k in range(count)]


def _probe(path) -> dict:
    done = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("name, container", [("live.mp4", "mp4"), ("live.ts", "mpegts")])
def test_a_file_reads_back_frame_for_frame(tmp_path, name, container):
    path = tmp_path / name
    frames = _frames(30)
    with LiveWriter(path, stream_format(path), W, H) as writer:
        assert list(tmp_path.iterdir())[0].name.startswith(TEMP_PREFIX)  # written beside, under a temporary name
        for image, audio in frames:
            writer.write(image, audio)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    info = _probe(path)
    assert container in info["format"]["format_name"].split(",")
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["r_frame_rate"], video["width"], video["height"]) == ("h264", "25/1", W, H)
    with av.open(str(path)) as decoded:
        shown = [f.to_ndarray(format="rgb24") for f in decoded.decode(video=0)]
    assert len(shown) == 30
    for k, image in enumerate(shown):  # the colours players show, within codec noise
        assert np.abs(image.astype(int) - frames[k][0]).mean() < 4, k
    heard = load_audio(path)
    tone = np.concatenate([audio for _, audio in frames])
    spectrum = np.abs(np.fft.rfft(heard))
    assert abs(np.argmax(spectrum) * 16000 / len(heard) - 440) < 5  # the tone, at its pitch
    assert abs(len(heard) - len(tone)) <= 1100  # the same length, give or take the AAC priming
    if container == "mp4":
        assert b"moof" in path.read_bytes() and b"mvex" in path.read_bytes()


def test_a_failed_stream_leaves_the_earlier_file_untouched(tmp_path):
    path = tmp_path / "live.ts"
    path.write_bytes(b"yesterday's stream")
    with pytest.raises(ValueError, match="uint8"):
        with LiveWriter(path, "mpegts", W, H) as writer:
            writer.write(*_frames(1)[0])
            writer.write(np.zeros((H, W, 3), np.float32), np.zeros(640, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["live.ts"]
    assert path.read_bytes() == b"yesterday's stream"


def test_a_pipe_whose_reader_left_is_a_clear_error():
    reader, writer_fd = os.pipe()
    os.close(reader)
    try:
        with pytest.raises(OutputError, match="the reader of standard output closed it"):
            with LiveWriter(writer_fd, "mpegts", W, H, name="standard output") as writer:
                for image, audio in _frames(200):
                    writer.write(image, audio)
    finally:
        os.close(writer_fd)


def test_a_refusing_server_stops_the_stream_with_its_reason():
    """The relay (ffmpeg) cannot connect to a closed port of this machine: the next frames raise its reason,
    without the stream key, and the relay is gone."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # released: nothing listens there
    url = f"rtmp://127.0.0.1:{port}/live/secret-key"
    with pytest.raises(OutputError) as caught:
        with LiveWriter(url, stream_format(url), W, H) as writer:
            for image, audio in _frames(2000):
                writer.write(image, audio)
    message = str(caught.value)
    assert message == f"cannot stream to rtmp://127.0.0.1:{port}/…: Connection refused"
    assert writer._relay._proc.returncode is not None


def test_the_format_of_each_target():
    assert stream_format("a/b.TS") == "mpegts" and stream_format("x.m4v") == "fmp4" and stream_format("x.mov") == "fmp4"
    assert stream_format(5) == "mpegts" and stream_format(5, "fmp4") == "fmp4"
    assert stream_format("rtmp://h/app/key") == "mpegts" and stream_format("srt://h:9000") == "mpegts"
    with pytest.raises(ConfigError, match="cannot stream to http:// URLs"):
        stream_format("http://h/x")
    with pytest.raises(ConfigError, match="does not apply to rtmp://"):
        stream_format("rtmp://h/app/key", "fmp4")
    with pytest.raises(ConfigError, match="is mpegts by its extension"):
        stream_format("x.ts", "fmp4")
    with pytest.raises(OutputError, match="must end in"):
        stream_format("x.mkv")


def test_shown_urls_hide_keys_and_passwords():
    assert shown_url("rtmp://me:pw@a.example:1935/live/key?x=1") == "rtmp://a.example:1935/…"
    assert shown_url("srt://127.0.0.1:9000") == "srt://127.0.0.1:9000"


@pytest.mark.parametrize("name", ["ts.mp4", "ts.ts"])
def test_frames_are_40_ms_apart_and_the_audio_starts_with_them(tmp_path, name):
    """Video at 25 fps; the audio's first packet (the AAC encoder's priming, 1024 samples at 48 kHz) is muxed
    first, so the muxer shifts both streams alike. MPEG-TS keeps that shift on the video's first frame too;
    fragmented MP4 starts each track at 0 (its first frame then lasts the priming longer)."""
    path = tmp_path / name
    with LiveWriter(path, stream_format(path), W, H) as writer:
        for image, audio in _frames(50):
            writer.write(image, audio)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        times = {"video": [], "audio": []}
        for packet in container.demux():
            if packet.pts is not None:
                times[packet.stream.type].append(float(packet.pts * packet.stream.time_base))
    video_times, audio_times = sorted(times["video"]), sorted(times["audio"])
    assert len(video_times) == 50
    assert np.allclose(np.diff(video_times[1:]), float(Fraction(1, 25)))
    priming = 1024 / 48000
    if name.endswith(".ts"):
        assert np.isclose(video_times[0] - audio_times[0], priming, atol=1e-4)
        assert np.isclose(video_times[1] - video_times[0], 1 / 25)
    else:
        assert video_times[0] == audio_times[0] == 0.0
        assert np.isclose(video_times[1] - video_times[0], 1 / 25 + priming, atol=1e-3)

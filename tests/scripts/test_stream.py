"""scripts/stream.py and stream.sh end to end on CPU: tiny random-weight models, an avatar and espeak speech
made here, streams read back with ffprobe and PyAV.

Most runs call ``main()`` in-process (any traceback fails the test); standard input and output, the shell
wrapper and Ctrl-C go through a subprocess. No assertion depends on how fast the machine is: a real-time
run's lead-in (its speech latency) is read back from the stream's own audio.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from latentsync.media.audio import load_audio
from latentsync.media.reader import VideoReader
from latentsync.pipelines.frame_plan import pingpong_index
from scripts.stream import main
from tests.conftest import REPO_ROOT
from tests.tiny_models import tiny_models  # noqa: F401  (session fixture)
from tools.synthetic_media import speak, write_talking_video, write_wav

SR = 16000
FPS = 25
SIZE = 128
PAUSE = (1.0, 2.2)  # seconds of silence in the middle of speech_pause.wav


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """A 1 s avatar with a closed mouth, a face-less video, 2 s of speech, and speech with a 1.2 s pause."""
    root = tmp_path_factory.mktemp("stream_media")
    speech = speak("Hello there. I am an astronaut, talking to you.", root / "raw.wav")
    speech = np.pad(speech, (0, max(0, 2 * SR - len(speech))))[: 2 * SR]
    write_wav(root / "speech.wav", speech)
    paused = np.concatenate([speech[: int(PAUSE[0] * SR)], np.zeros(int((PAUSE[1] - PAUSE[0]) * SR), np.float32),
                             speech[SR // 2 : SR // 2 + SR]])
    write_wav(root / "speech_pause.wav", paused)
    drawn = write_talking_video(root / "avatar.mp4", speech[:SR], size=(SIZE, SIZE), mouth_envelope=np.zeros(25),
                                with_audio=False)
    write_talking_video(root / "blank.mp4", speech[: SR // 2], size=(96, 96), blank_frames=range(13),
                        with_audio=False)
    (root / "text.wav").write_text("not audio at all\n")
    return {"root": root, "avatar": root / "avatar.mp4", "blank": root / "blank.mp4", "speech": root / "speech.wav",
            "pause": root / "speech_pause.wav", "text": root / "text.wav",
            "speech_samples": load_audio(root / "speech.wav"), "pause_samples": load_audio(root / "speech_pause.wav"),
            "mouth_boxes": drawn["mouth_boxes"]}


def model_args(models, cache: Path | str = "") -> list[str]:
    return [*models.flags(), "--device", "cpu", "--face_detector", "mediapipe", "--inference_steps", "1",
            "--seed", "3", "--clip_frames", "8", "--avatar_cache_dir", str(cache)]


@pytest.fixture()
def cli(tiny_models, capsys, caplog):  # noqa: F811
    """Run main() in-process; returns (exit code, stderr lines, log text)."""
    caplog.set_level(logging.INFO)

    def run(*args: str) -> tuple[int, list[str], str]:
        code = main([*model_args(tiny_models), *args])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        log = caplog.text
        caplog.clear()
        return code, [line for line in err.splitlines() if line.strip()], log

    return run


def ffprobe(path: Path) -> dict:
    """ffprobe's view of a stream file: its format and its streams."""
    done = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def video_stream(info: dict) -> dict:
    (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    return video


def decoded_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def assert_stream(path: Path, format_name: str, seconds: float | None = None) -> dict:
    """An H.264 + AAC stream of ``format_name`` at 25 fps whose frames and audio last as long (and ``seconds``)."""
    info = ffprobe(path)
    assert format_name in info["format"]["format_name"].split(","), info["format"]
    video = video_stream(info)
    assert video["codec_name"] == "h264" and video["r_frame_rate"] == "25/1"
    assert (int(video["width"]), int(video["height"])) == (SIZE, SIZE)
    (audio,) = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert audio["codec_name"] == "aac"
    frames = len(decoded_frames(path))
    duration = float(info["format"]["duration"])
    assert abs(duration - frames / FPS) <= 2 / FPS, (duration, frames)  # + the AAC encoder's priming
    if seconds is not None:
        assert abs(frames / FPS - seconds) <= 1 / FPS, (frames, seconds)
    return {"frames": frames, "duration": duration, "info": info}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def summary(log: str) -> str:
    (line,) = [line for line in log.splitlines() if "done: " in line]
    return line


# --------------------------------------------------------------------------- streams written


def test_file_to_fragmented_mp4_at_real_time_pace(cli, media, tmp_path):
    """The default pace: frames flow from the start, the speech follows its latency; the file's audio is the
    input audio after that lead-in, the video lasts as long, and the summary says what was streamed."""
    out = tmp_path / "live.mp4"
    code, err, log = cli("--video_path", str(media["avatar"]), "--audio_path", str(media["speech"]), "-o", str(out))
    assert code == 0, err
    assert leftovers(tmp_path) == []
    data = out.read_bytes()
    assert b"mvex" in data[:4096] and data.count(b"moof") >= 2, "not fragmented MP4"
    stream = assert_stream(out, "mp4")

    # Where the speech sits in the stream: the lag that best aligns the output's audio with the input.
    speech, heard = media["speech_samples"], load_audio(out)
    correlation = np.fft.irfft(np.fft.rfft(heard, 2 * len(heard)) * np.conj(np.fft.rfft(speech, 2 * len(heard))))
    lag = int(np.argmax(correlation[: len(heard)]))
    peak = correlation[lag] / (np.linalg.norm(speech) * np.linalg.norm(heard[lag : lag + len(speech)]))
    assert peak > 0.9, peak
    lead_in = lag / SR
    assert 0.3 < lead_in < 5.0, lead_in  # the look-ahead, a clip's compute and the jitter margin
    assert abs(stream["frames"] / FPS - (lead_in + len(speech) / SR)) <= 2 / FPS
    assert f"done: {stream['frames']} frames" in summary(log)
    assert re.search(r"first-frame latency \d+\.\d\d s", summary(log))
    assert "live at 25 fps; speech reaches the face" in log


def test_file_with_a_pause_to_mpegts_gives_the_avatars_own_frames_in_the_pause(cli, media, tmp_path):
    """As fast as possible: the stream lasts exactly as long as the audio; frames in the middle of the pause
    are the avatar's own pixels (after the blend out), frames of speech are generated."""
    out = tmp_path / "paused.ts"
    code, err, log = cli("--video_path", str(media["avatar"]), "--audio_path", str(media["pause"]), "-o", str(out),
                         "--pace", "fast")
    assert code == 0, err
    samples = media["pause_samples"]
    stream = assert_stream(out, "mpegts", seconds=math.ceil(len(samples) / 640) / FPS)
    frames = decoded_frames(out).astype(np.int16)
    avatar = np.stack(list(VideoReader(media["avatar"]))).astype(np.int16)

    def difference(k: int) -> float:
        """Mean difference around the mouth from the avatar frame this output frame shows."""
        source = pingpong_index(k, len(avatar))
        x0, y0, x1, y1 = np.round(media["mouth_boxes"][source]).astype(int) + [-6, -6, 6, 6]
        return float(np.abs(frames[k, y0:y1, x0:x1] - avatar[source, y0:y1, x0:x1]).mean())

    idle = range(int(PAUSE[0] * FPS) + 14, int(PAUSE[1] * FPS) - 2)  # after the hangover (8) and the blend (4)
    talking = range(2, int(PAUSE[0] * FPS) - 2)
    idle_differences = [difference(k) for k in idle]
    talking_differences = [difference(k) for k in talking]
    assert max(idle_differences) < 8, idle_differences  # only two lossy encodings apart (about 4 levels)
    assert min(talking_differences) > 4 * max(idle_differences), (talking_differences, idle_differences)
    line = summary(log)
    synced = int(re.search(r"(\d+) lip-synced", line).group(1))
    assert len(idle) <= stream["frames"] - synced < stream["frames"] - len(talking), line


def test_stdin_pcm_to_stdout_through_stream_sh_from_another_folder(tiny_models, media, tmp_path):  # noqa: F811
    """Raw stereo float PCM at 48 kHz in on a pipe, MPEG-TS out on a pipe: the stream holds the whole input."""
    speech = media["speech_samples"]
    stereo = np.stack([speech, speech], axis=1)
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ac", "2", "-ar", str(SR), "-i", "pipe:0",
                          "-f", "f32le", "-ac", "2", "-ar", "48000", "pipe:1"], input=stereo.astype("<f4").tobytes(),
                         capture_output=True, check=True).stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = ["bash", str(REPO_ROOT / "stream.sh"), *model_args(tiny_models), "--video_path", str(media["avatar"]),
           "--audio_path", "-", "--input_rate", "48000", "--input_format", "f32le", "--input_channels", "2",
           "-o", "-", "--pace", "fast"]
    done = subprocess.run(cmd, input=pcm, capture_output=True, cwd=elsewhere, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable})
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err and "done: " in err.splitlines()[-1]
    out = tmp_path / "piped.ts"
    out.write_bytes(done.stdout)
    assert_stream(out, "mpegts", seconds=math.ceil(len(pcm) / 8 / 3 / 640) / FPS)
    assert list(elsewhere.iterdir()) == []


def test_rtmp_to_a_listener_on_this_machine(tiny_models, media, tmp_path, cli):  # noqa: F811
    """ffmpeg listening on 127.0.0.1 receives the FLV stream the relay sends: H.264 and AAC, as long as the audio."""
    port = free_port()
    received = tmp_path / "received.flv"
    listener = subprocess.Popen(["ffmpeg", "-v", "error", "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/key",
                                 "-c", "copy", "-y", str(received)], stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    try:
        wait_for_port(port, listener)
        code, err, log = cli("--video_path", str(media["avatar"]), "--audio_path", str(media["speech"]),
                             "-o", f"rtmp://127.0.0.1:{port}/live/key", "--pace", "fast")
        assert code == 0, err
        listener.wait(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.wait()
    info = ffprobe(received)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert abs(float(info["format"]["duration"]) - 2.0) <= 3 / FPS
    assert "key" not in log, "the stream key was logged"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    """Until something listens on 127.0.0.1:``port`` (ffmpeg -listen takes one connection: none is made)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening.strip():
            return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on port {port}")


# --------------------------------------------------------------------------- bad input


def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


BAD = {
    # name: (args given the media and the output folder, the last line starts with, ... and holds)
    "missing audio": (lambda m, o: ["--audio_path", str(m["root"] / "nope.wav"), "-o", str(o / "out.ts")],
                      "audio file not found"),
    "corrupt audio": (lambda m, o: ["--audio_path", str(m["text"]), "-o", str(o / "out.ts")],
                      "ffmpeg could not decode audio from"),
    "missing avatar": (lambda m, o: ["--video_path", str(m["root"] / "nope.mp4"), "-o", str(o / "out.ts")],
                       "avatar (--video_path) file not found"),
    "avatar without a face": (lambda m, o: ["--video_path", str(m["blank"]), "-o", str(o / "out.ts")],
                              "no face"),
    "unreachable rtmp server": (lambda m, o: ["-o", f"rtmp://127.0.0.1:{_closed_port()}/live/secret-key"],
                                "connection refused"),
    "unknown url scheme": (lambda m, o: ["-o", "http://127.0.0.1:9/x"], "cannot stream to http:// urls"),
    "output is an existing folder": (lambda m, o: ["-o", str(_folder(o, "dir.ts"))], "is an existing folder"),
    "output under a file": (lambda m, o: ["-o", str(_file(o, "plain") / "out.ts")], "is a file"),
    "output under /proc": (lambda m, o: ["-o", "/proc/latentsync-stream.ts"], "does not accept new files"),
    "output is the avatar": (lambda m, o: ["-o", str(m["avatar"])], "is the input file"),
    "output extension": (lambda m, o: ["-o", str(o / "out.avi")], "must end in .mp4, .m4v, .mov, .ts"),
    "format against extension": (lambda m, o: ["-o", str(o / "out.ts"), "--format", "fmp4"],
                                  "is mpegts by its extension"),
    "pcm flags with a file": (lambda m, o: ["--input_rate", "8000", "-o", str(o / "out.ts")],
                              "--input_rate describe raw pcm on standard input"),
    "clip_frames 0": (lambda m, o: ["--clip_frames", "0", "-o", str(o / "out.ts")],
                      "stream option clip_frames must be"),
    "chunk_ms 0": (lambda m, o: ["--chunk_ms", "0", "-o", str(o / "out.ts")], "--chunk_ms"),
    "no output": (lambda m, o: [], "the following arguments are required: -o/--output"),
}


def _folder(out: Path, name: str) -> Path:
    (out / name).mkdir()
    return out / name


def _file(out: Path, name: str) -> Path:
    (out / name).write_text("mine\n")
    return out / name


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_error_line_and_leaves_every_file_as_it_was(name, cli, media, tmp_path):
    args, needle = BAD[name]
    out = tmp_path / "out"
    out.mkdir()
    (out / "out.ts").write_bytes(b"an earlier stream, not to be touched")
    extra = args(media, out)
    if "--video_path" not in extra:
        extra += ["--video_path", str(media["avatar"])]
    if "--audio_path" not in extra:
        extra += ["--audio_path", str(media["speech"])]
    inputs, outputs = _digest(media["root"]), _digest(out)
    code, err, log = cli(*extra, "--pace", "fast")
    assert code == 1, err
    assert err and err[-1].startswith("error: "), err
    assert needle.lower() in err[-1].lower(), err[-1]
    assert sum(line.startswith("error:") for line in err) == 1, err
    assert "secret-key" not in err[-1] + log, "the stream key was shown"
    assert _digest(out) == outputs, "an output file appeared, changed or went"
    assert _digest(media["root"]) == inputs


def test_broken_pcm_on_stdin_is_one_error_line(tiny_models, media, tmp_path):  # noqa: F811
    cmd = [sys.executable, "-m", "scripts.stream", *model_args(tiny_models), "--video_path", str(media["avatar"]),
           "--audio_path", "-", "--input_channels", "2", "-o", "-", "--pace", "fast"]
    done = subprocess.run(cmd, input=b"\x01\x02\x03\x04\x05\x06", capture_output=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1
    assert err[-1] == ("error: the raw PCM input ended inside a sample: 2 bytes left over, not a whole 2-channel "
                       "s16le sample (4 bytes); check --input_format and --input_channels"), err


def test_ctrl_c_mid_stream_closes_cleanly_and_leaves_nothing(tiny_models, media, tmp_path):  # noqa: F811
    """SIGINT while frames are written: exit 130, one error line, the partial file removed."""
    sig, code = signal.SIGINT, 130
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    long_audio = tmp_path / "long.wav"
    write_wav(long_audio, np.tile(media["speech_samples"], 4))  # 8 s at real-time pace: stopped long before
    cmd = [sys.executable, "-m", "scripts.stream", *model_args(tiny_models), "--video_path", str(media["avatar"]),
           "--audio_path", str(long_audio), "-o", str(out_dir / "live.mp4"), "--report_every", "0.5"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    try:
        for line in proc.stderr:  # until frames are being written
            lines.append(line)
            if " s streamed, " in line:
                break
        assert any(" s streamed, " in line for line in lines), "".join(lines)
        assert [p.name for p in out_dir.iterdir() if p.name.startswith(".tmp-latentsync-")], "no partial file"
        os.kill(proc.pid, sig)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    err = "".join(lines) + rest
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"error: interrupted by {signal.Signals(sig).name}; the output being "
                                            "written was removed")
    assert list(out_dir.iterdir()) == []


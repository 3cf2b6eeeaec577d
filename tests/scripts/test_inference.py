"""scripts/inference.py end to end on CPU: tiny random-weight models in the official formats, real
media made here (the astronaut photo with gentle motion, espeak speech), the real code paths
(MediaPipe detection, alignment, VAE, UNet, restore, H.264 + AAC mux).

Most runs call ``main()`` in-process (any traceback fails the test); two go through
``inference.sh`` in a subprocess for the shell wrapper, odd paths and real exit codes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from latentsync.errors import ConfigError
from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.reader import VideoReader
from scripts import inference as inference_cli
from scripts.inference import main
from tests.conftest import REPO_ROOT
from tests.processes import run_group
from tests.tiny_models import tiny_models  # noqa: F401  (session fixture)
from tools.synthetic_media import FACE_CROP, MOUTH_CENTER, astronaut_face, speak, write_talking_video, write_wav

SR = 16000
FPS = 25
SIZE = 128  # video width and height
BLANK = (30, 31, 32)  # frames of the main fixture without a face


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """Inputs shared by the tests (made once)."""
    root = tmp_path_factory.mktemp("media")
    speech = speak("Hello there. I am an astronaut, talking to you.", root / "raw.wav")
    speech = np.pad(speech, (0, max(0, 3 * SR - len(speech))))[: 3 * SR]  # exactly 3 s
    write_wav(root / "speech.wav", speech)
    write_talking_video(root / "face.mp4", speech, size=(SIZE, SIZE), blank_frames=BLANK, with_audio=False)
    one_second = speech[SR // 2 : SR // 2 + SR]
    write_wav(root / "speech_1s.wav", one_second)
    write_talking_video(root / "face_1s.mp4", one_second, size=(SIZE, SIZE), with_audio=False)
    return {"root": root, "speech": speech, "video": root / "face.mp4", "audio": root / "speech.wav",
            "video_1s": root / "face_1s.mp4", "audio_1s": root / "speech_1s.wav"}


def model_args(models, temp_dir: Path) -> list[str]:
    return [
        *models.flags(),
        "--inference_steps", "1",
        "--device", "cpu",
        "--face_detector", "mediapipe",
        "--seed", "7",
        "--temp_dir", str(temp_dir),
    ]


@pytest.fixture()
def cli(tiny_models, tmp_path, capsys, caplog):  # noqa: F811
    """Run main() in-process; returns (exit code, stderr + log). Checks the private temp dir is gone."""
    caplog.set_level(logging.INFO)
    work = tmp_path / "work"
    work.mkdir()

    def run(video, audio, out, *extra: str) -> tuple[int, str]:
        code = main([*model_args(tiny_models, work), "--video_path", str(video), "--audio_path", str(audio),
                     "--video_out_path", str(out), *extra])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert list(work.iterdir()) == [], "temp dir left behind"
        log = caplog.text
        caplog.clear()
        return code, err + log

    return run


def describe(path: Path) -> dict:
    """Stream facts of an output file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "width": video.width,
            "height": video.height,
            "fps": float(video.average_rate),
            "frames": sum(1 for _ in container.decode(video=0)),
            "audio_seconds": float(audio.duration * audio.time_base) if audio is not None else None,
        }
    return info


def assert_valid_output(out: Path, audio_seconds: float, size=(SIZE, SIZE)) -> dict:
    assert out.is_file()
    info = describe(out)
    assert (info["width"], info["height"]) == size
    assert info["fps"] == FPS
    assert info["audio_seconds"] is not None, "no audio stream"
    assert abs(info["audio_seconds"] - audio_seconds) <= 1 / FPS
    assert abs(info["frames"] / FPS - audio_seconds) <= 1 / FPS
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
    return info


def assert_one_error_line(code: int, err: str, *needles: str) -> None:
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0].lower()


# --------------------------------------------------------------------------- the main fixture


def test_real_face_video(cli, media, tmp_path):
    out = tmp_path / "out.mp4"
    code, err = cli(media["video"], media["audio"], out)
    assert code == 0, err
    assert_valid_output(out, 3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "work"]

    source = np.stack(list(VideoReader(media["video"]))).astype(np.int16)
    result = np.stack(list(VideoReader(out))).astype(np.int16)
    assert source.shape == result.shape
    diff = np.abs(source - result).max(axis=-1)  # (frames, h, w)

    # Pixels far from the mouth (outside the face crop) are unchanged up to codec noise.
    x0, y0, x1, _ = FACE_CROP
    scale = SIZE / (x1 - x0)
    mouth_x, mouth_y = (MOUTH_CENTER[0] - x0) * scale, (MOUTH_CENTER[1] - y0) * scale
    yy, xx = np.mgrid[:SIZE, :SIZE]
    far = np.hypot(xx - mouth_x, yy - mouth_y) > 0.4 * SIZE
    faces = [i for i in range(len(source)) if i not in BLANK]
    assert diff[faces][:, far].mean() < 4
    assert np.percentile(diff[faces][:, far], 99.9) < 20
    # ... while the mouth region was generated (random weights: visibly different).
    near = np.hypot(xx - mouth_x, yy - mouth_y) < 0.08 * SIZE
    assert diff[faces][:, near].mean() > 10

    # Frames without a face pass through unchanged (codec noise only).
    for i in BLANK:
        assert diff[i].mean() < 2 and diff[i].max() < 16, i
    assert "3 without a face" in err


def test_untouched_region_keeps_the_colours_of_a_bt709_hd_video(cli, media, tmp_path):
    """A BT.709-tagged HD talking clip (encoded by ffmpeg, as upstream's demo videos are): away from
    the face the output shows the input's colours in ffmpeg and in Chromium. Measured: mean |diff|
    1.1 (ffmpeg) and 1.2 (Chromium), mean diff per channel -0.7 to -1.0 (ffmpeg's decoder rounds
    down). Before (read as BT.601, written untagged): mean |diff| 4.5, R and G 6 levels darker."""
    from tests.media.browser import chromium_frames
    from tests.media.media_files import ffmpeg_rgb, write_with_ffmpeg

    size = 720
    plain = tmp_path / "plain.mp4"
    write_talking_video(plain, media["speech"][SR // 2 : SR // 2 + SR], size=(size, size), motion="none",
                        with_audio=False)
    video = tmp_path / "bt709.mp4"
    write_with_ffmpeg(video, list(VideoReader(plain)), "bt709")
    out = tmp_path / "out.mp4"
    code, err = cli(video, media["audio_1s"], out)
    assert code == 0, err

    x0, y0, x1, _ = FACE_CROP
    scale = size / (x1 - x0)
    yy, xx = np.mgrid[:size, :size]
    far = np.hypot(xx - (MOUTH_CENTER[0] - x0) * scale, yy - (MOUTH_CENTER[1] - y0) * scale) > 0.45 * size
    source, result = ffmpeg_rgb(video, (size, size)), ffmpeg_rgb(out, (size, size))
    in_chromium = chromium_frames([video, out])
    for decoder, before, after in (("ffmpeg", source[0], result[0]), ("chromium", *in_chromium)):
        diff = after[far].astype(int) - before[far]
        assert np.abs(diff).mean() < 1.6, (decoder, np.abs(diff).mean())
        assert np.abs(diff.mean(axis=0)).max() < 1.2, (decoder, diff.mean(axis=0))


# --------------------------------------------------------------------------- other inputs


def test_30fps_video_and_stereo_mp3(cli, media, tmp_path):
    video = tmp_path / "face30.mp4"
    write_talking_video(video, media["speech"][: 2 * SR], fps=30, size=(SIZE, SIZE), with_audio=False)
    mp3 = tmp_path / "speech 44k.mp3"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(media["audio_1s"]),
                    "-ar", "44100", "-ac", "2", str(mp3)], check=True)
    out = tmp_path / "out.mp4"
    code, err = cli(video, mp3, out)
    assert code == 0, err
    assert_valid_output(out, 1.0)


def test_still_image(cli, media, tmp_path):
    x0, y0, x1, y1 = FACE_CROP
    import cv2

    image = cv2.resize(astronaut_face()[y0:y1, x0:x1], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    png = tmp_path / "still.png"
    cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.mp4"
    code, err = cli(png, media["audio_1s"], out)
    assert code == 0, err
    assert_valid_output(out, 1.0)


def test_audio_longer_than_video_pingpongs(cli, media, tmp_path):
    audio = tmp_path / "long.wav"
    write_wav(audio, media["speech"][: int(2.5 * SR)])
    out = tmp_path / "out.mp4"
    code, err = cli(media["video_1s"], audio, out)
    assert code == 0, err
    assert_valid_output(out, 2.5)
    # Output frame 25 + k shows source frame 24 - k (played backward), up to codec noise and the mouth.
    source = list(VideoReader(media["video_1s"]))
    result = list(VideoReader(out))
    assert np.abs(result[26].astype(int) - source[23]).mean() < np.abs(result[26].astype(int) - source[2]).mean()


def test_audio_shorter_than_video_cuts(cli, media, tmp_path):
    out = tmp_path / "out.mp4"
    code, err = cli(media["video"], media["audio_1s"], out)
    assert code == 0, err
    assert_valid_output(out, 1.0)


@pytest.mark.parametrize("seconds, silent", [(1.0, True), (0.1, False)])
def test_silent_and_very_short_audio(cli, media, tmp_path, seconds, silent):
    audio = tmp_path / "a.wav"
    samples = np.zeros(int(seconds * SR), np.float32) if silent else media["speech"][SR : SR + int(seconds * SR)]
    write_wav(audio, samples)
    out = tmp_path / "out.mp4"
    code, err = cli(media["video_1s"], audio, out)
    assert code == 0, err
    info = assert_valid_output(out, seconds)
    assert info["frames"] == int(np.ceil(seconds * FPS - 1e-9))


# --------------------------------------------------------------------------- bad inputs


def _bad_inputs(tmp_path: Path, media: dict) -> dict[str, tuple[Path, Path, tuple[str, ...]]]:
    text_wav = tmp_path / "text.wav"
    text_wav.write_text("this is not audio\n")
    text_mp4 = tmp_path / "text.mp4"
    text_mp4.write_text("this is not video\n")
    corrupt = tmp_path / "corrupt.mp4"
    data = media["video"].read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    no_frames = tmp_path / "no_frames.mp4"
    with av.open(str(no_frames), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    empty_wav = tmp_path / "empty.wav"
    wavfile.write(empty_wav, SR, np.zeros(0, np.int16))
    no_face = tmp_path / "no_face.mp4"
    write_talking_video(no_face, np.zeros(SR // 2, np.float32), size=(SIZE, SIZE), blank_frames=range(13),
                        with_audio=False)
    video, audio = media["video_1s"], media["audio_1s"]
    return {
        "missing video": (tmp_path / "nope.mp4", audio, ("not found",)),
        "missing audio": (video, tmp_path / "nope.wav", ("not found",)),
        "corrupt video": (corrupt, audio, ()),
        "video without frames": (no_frames, audio, ("frames",)),
        "audio without samples": (video, empty_wav, ("no samples",)),
        "text named .wav": (video, text_wav, ()),
        "text named .mp4": (text_mp4, audio, ()),
        "no face at all": (no_face, audio, ("no face",)),
    }


def test_bad_inputs_fail_with_one_line(cli, media, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cases = _bad_inputs(inputs, media)
    before = sorted(p.name for p in inputs.iterdir())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, (video, audio, needles) in cases.items():
        code, err = cli(video, audio, out_dir / "out.mp4")
        assert_one_error_line(code, err, *needles)
        assert list(out_dir.iterdir()) == [], name  # nothing created, not even a partial file
    assert sorted(p.name for p in inputs.iterdir()) == before  # inputs untouched


def test_missing_checkpoint_names_the_download_command(tiny_models, media, tmp_path, capsys):  # noqa: F811
    args = model_args(tiny_models, tmp_path)
    args[args.index("--inference_ckpt_path") + 1] = str(tmp_path / "absent.pt")
    code = main([*args, "--video_path", str(media["video_1s"]), "--audio_path", str(media["audio_1s"]),
                 "--video_out_path", str(tmp_path / "o.mp4")])
    assert_one_error_line(code, capsys.readouterr().err, "not found", "setup_env.sh", "hf download")


# --------------------------------------------------------------------------- batch


def test_batch_csv_skips_done_and_reports_failures(tiny_models, media, tmp_path, capsys, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    done = tmp_path / "done.mp4"
    done.write_bytes(b"already there")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    rows = [
        "video,audio,output",
        f"{media['video_1s']},{media['audio_1s']},ok.mp4",
        f"{media['video_1s']},{bad},failed.mp4",
        f"{media['video_1s']},{media['audio_1s']},done.mp4",
    ]
    listing = tmp_path / "pairs.csv"
    listing.write_text("\n".join(rows) + "\n")
    code = main([*model_args(tiny_models, tmp_path), "--batch", str(listing)])
    err = capsys.readouterr().err + caplog.text
    assert code == 1
    assert "Traceback" not in err
    assert (tmp_path / "ok.mp4").is_file() and not (tmp_path / "failed.mp4").exists()
    assert done.read_bytes() == b"already there"
    assert "1 synced, 1 already done, 1 failed" in err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "bad.wav" in failed[0] and "decode audio" in failed[0]


# --------------------------------------------------------------------------- the shell wrapper


def _shell(args: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return run_group(["bash", "inference.sh", *args], cwd=cwd, env=env, timeout=300)


def test_inference_sh_with_odd_paths(tiny_models, media, tmp_path):  # noqa: F811
    odd = tmp_path / "my dir 'quoted'; x"
    odd.mkdir()
    video, audio = odd / "in put;1.mp4", odd / "a \"b\" c.wav"
    video.write_bytes(media["video_1s"].read_bytes())
    audio.write_bytes(media["audio_1s"].read_bytes())
    out = odd / "out; rm -rf x.mp4"
    work = tmp_path / "work"
    work.mkdir()
    result = _shell([*model_args(tiny_models, work), "--video_path", str(video), "--audio_path", str(audio),
                     "--video_out_path", str(out)])
    assert result.returncode == 0, result.stderr
    assert_valid_output(out, 1.0)
    assert sorted(p.name for p in odd.iterdir()) == sorted([video.name, audio.name, out.name])
    assert list(work.iterdir()) == []

    # A real process with an expected error: one line, exit 1, no traceback.
    result = _shell([*model_args(tiny_models, work), "--video_path", str(audio), "--audio_path", str(audio),
                     "--video_out_path", str(odd / "never.mp4")])
    assert "Traceback" not in result.stderr
    assert_one_error_line(result.returncode, result.stderr)
    assert not (odd / "never.mp4").exists()


def test_archival_flag_picks_the_slow_encoding(tiny_models, tmp_path):  # noqa: F811
    from latentsync.media.writer import ARCHIVAL_ENCODING, FAST_ENCODING
    from latentsync.pipelines.video_runner import video_encoding
    from scripts.inference import parse_args

    flags = [*model_args(tiny_models, tmp_path)]
    assert parse_args(flags)[1].archival is False  # configs/inference.yaml: fast by default
    assert video_encoding(parse_args(flags)[1]) == FAST_ENCODING
    assert video_encoding(parse_args([*flags, "--archival"])[1]) == ARCHIVAL_ENCODING


def test_detection_flags_set_the_face_options(tiny_models, tmp_path):  # noqa: F811
    from latentsync.face.alignment import FaceStageOptions
    from latentsync.pipelines.video_runner import face_stage_options
    from scripts.inference import parse_args

    flags = [*model_args(tiny_models, tmp_path)]
    cpu = torch.device("cpu")
    assert face_stage_options(parse_args(flags)[1], cpu) == FaceStageOptions(detect_every=5, detect_max_side=960)
    chosen = face_stage_options(parse_args([*flags, "--detect_every", "1", "--detect_max_side", "0"])[1], cpu)
    assert chosen == FaceStageOptions(detect_every=1, detect_max_side=None)


@pytest.mark.parametrize("flag, value", [("--detect_every", "0"), ("--detect_max_side", "-1")])
def test_bad_detection_flags_fail_with_one_line(tiny_models, media, tmp_path, capsys, flag, value):  # noqa: F811
    code = main([*model_args(tiny_models, tmp_path), "--video_path", str(media["video_1s"]),
                 "--audio_path", str(media["audio_1s"]), "--video_out_path", str(tmp_path / "out.mp4"), flag, value])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"error: {flag} must be")
    assert not (tmp_path / "out.mp4").exists()


def test_cli_passes_every_setting_to_the_run(monkeypatch, tmp_path):
    """The settings the run gets are the config's, with the flags' values: the sampler among them (not the loader's)."""
    seen = {}

    class FakeJob:
        def __init__(self, settings, detector, progress):
            seen["run"] = settings

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            pass

        def sync(self, pipeline):
            seen["synced_with"] = pipeline

    monkeypatch.setattr(inference_cli, "check_job", lambda job: None)
    monkeypatch.setattr(inference_cli, "missing_model_files", lambda *paths: [])
    monkeypatch.setattr(inference_cli, "make_detector", lambda *args, **kwargs: None)
    monkeypatch.setattr(inference_cli, "load_pipeline_for", lambda settings, **kwargs: seen.setdefault("loaded", settings))
    monkeypatch.setattr(inference_cli, "VideoJob", FakeJob)
    assert main(["--scheduler", "dpm++", "--inference_steps", "10", "--temp_dir", str(tmp_path)]) == 0
    assert (seen["run"].scheduler, seen["run"].inference_steps, seen["run"].guidance_scale) == ("dpm++", 10, 1.5)
    assert seen["synced_with"] is seen["loaded"] is seen["run"]  # (the fake loader returns the settings it got)
    seen.clear()
    assert main(["--temp_dir", str(tmp_path)]) == 0
    assert seen["run"].scheduler == "ddim"  # configs/inference.yaml
    with pytest.raises(ConfigError, match="--scheduler"):
        inference_cli.parse_args(["--scheduler", "euler"])


def test_the_face_pass_runs_while_the_models_load(cli, media, tmp_path, monkeypatch):
    """A single run opens its job (the detection thread started) before the networks are loaded."""
    from latentsync.face.alignment import FaceAligner

    events = []
    detect, load = FaceAligner._detect, inference_cli.load_pipeline_for

    def detecting(self, *args, **kwargs):
        events.append("detect")
        return detect(self, *args, **kwargs)

    def loading(*args, **kwargs):
        deadline = time.monotonic() + 120
        while "detect" not in events:  # the face pass gets under way without the networks
            assert time.monotonic() < deadline, "no face detection before the models loaded"
            time.sleep(0.01)
        events.append("load")
        return load(*args, **kwargs)

    monkeypatch.setattr(FaceAligner, "_detect", detecting)
    monkeypatch.setattr(inference_cli, "load_pipeline_for", loading)
    code, err = cli(media["video_1s"], media["audio_1s"], tmp_path / "out.mp4")
    assert code == 0, err
    assert events[0] == "detect" and "load" in events
    assert_valid_output(tmp_path / "out.mp4", 1.0)

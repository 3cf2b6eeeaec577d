"""scripts/inference.py as a careless or unlucky user meets it (issue 14): odd flags and paths, phone
videos, interrupts, reruns, other folders. Whatever happens: one ``error:`` line last, no traceback,
no output or partial file, no working folder, inputs byte-identical.

The table runs ``main()`` in-process with file-descriptor capture (so native libraries' writes to
fd 2 count too); the interrupt, determinism and other-folder tests run real processes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader
from latentsync.utils.files import TEMP_PREFIX, WORK_PREFIX
from scripts.inference import main
from tests.conftest import REPO_ROOT
from tests.processes import run_group
from tests.scripts.test_inference import SIZE, _bad_inputs, assert_valid_output, media, model_args  # noqa: F401
from tests.tiny_models import tiny_models  # noqa: F401  (session fixture)
from tools.synthetic_media import write_talking_video, write_wav

SR = 16000


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (symlinks by their target path)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = "link:" + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _leftovers(*folders: Path) -> list[str]:
    return [str(p) for folder in folders if folder.is_dir() for p in folder.rglob("*")
            if p.name.startswith((TEMP_PREFIX, WORK_PREFIX, ".tmp-"))]


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Env:
    inputs: Path  # every input file of every case; digested before and after
    out: Path  # the output folder of the case (empty before)
    video: Path
    audio: Path
    models: object


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Env], list[str]]  # flags appended to the defaults (argparse: the last value wins)
    needle: str | None  # in the error line; None: the run must succeed


def _out(env: Env, name: str = "out.mp4") -> list[str]:
    return ["--video_path", str(env.video), "--audio_path", str(env.audio), "--video_out_path", str(env.out / name)]


def _with(env: Env, **flags) -> list[str]:
    args = _out(env)
    for flag, value in flags.items():
        args += [f"--{flag}", str(value)]
    return args


def _link(env: Env, kind: str) -> Path:
    target = env.out / f"{kind}.mp4"
    (os.symlink if kind == "symlink" else os.link)(env.video, target)
    return target


def _same_as_input(env: Env, target: Path) -> list[str]:
    return ["--video_path", str(env.video), "--audio_path", str(env.audio), "--video_out_path", str(target)]


def _file(env: Env, name: str, text: str = "not a folder\n") -> Path:
    path = env.out / name
    path.write_text(text)
    return path


def _folder(env: Env, name: str) -> Path:
    path = env.out / name
    path.mkdir()
    return path


def _immutable_folder(env: Env) -> list[str]:
    folder = env.out / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    return _with(env, video_out_path=folder / "out.mp4")


def _read_only_folder(env: Env) -> list[str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the immutable case covers it)")
    folder = env.out / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return _with(env, video_out_path=folder / "out.mp4")


def _video_without_audio_as_audio(env: Env) -> list[str]:
    return _with(env, audio_path=env.video)


def _config(env: Env, text: str) -> list[str]:
    return _with(env, config=_file(env, "conf.yaml", text))


def _extra_inputs(inputs: Path, media: dict) -> dict[str, Path]:
    """Input files the table needs besides _bad_inputs (made once, inside ``inputs``)."""
    text_ckpt = inputs / "text.pt"
    text_ckpt.write_text("this is not a checkpoint\n")
    talking = inputs / "talking_with_sound.mp4"
    write_talking_video(talking, media["speech"][: SR], size=(SIZE, SIZE), with_audio=True)
    return {"text_ckpt": text_ckpt, "talking": talking}


def _cases(extra: dict[str, Path], bad: dict) -> list[Case]:
    def bad_input(name):
        video, audio, needles = bad[name]
        needle = needles[0] if needles else ""
        return Case(name, lambda env: ["--video_path", str(video), "--audio_path", str(audio),
                                       "--video_out_path", str(env.out / "out.mp4")], needle)

    return [
        # 1. data loss: an output that is an input, under any name
        Case("output is the input video", lambda env: _same_as_input(env, env.video), "is the input"),
        Case("output is the input audio (a video's track)",
             lambda env: _with(env, audio_path=extra["talking"], video_out_path=extra["talking"]), "is the input"),
        Case("output is ./video", lambda env: _same_as_input(env, Path("./" + os.path.relpath(env.video))),
             "is the input"),
        Case("output is a symlink to the input", lambda env: _same_as_input(env, _link(env, "symlink")), "is the input"),
        Case("output is a hard link of the input", lambda env: _same_as_input(env, _link(env, "hardlink")),
             "is the input"),
        # 3. flags and folders that used to end in a traceback
        Case("inference_steps 0", lambda env: _with(env, inference_steps=0), "--inference_steps must be"),
        Case("inference_steps -1", lambda env: _with(env, inference_steps=-1), "--inference_steps must be"),
        Case("inference_steps 2000", lambda env: _with(env, inference_steps=2000), "between 1 and 999"),
        Case("deepcache_interval 0", lambda env: _with(env, deepcache_interval=0), "--deepcache_interval"),
        Case("deepcache_interval -2", lambda env: _with(env, deepcache_interval=-2), "--deepcache_interval"),
        Case("temp_dir that does not exist yet", lambda env: _with(env, temp_dir=env.out / "temp"), None),
        Case("temp_dir is a file", lambda env: _with(env, temp_dir=_file(env, "t")), "is a file"),
        Case("audio_cache_dir is a file", lambda env: _with(env, audio_cache_dir=_file(env, "cache")), "is a file"),
        Case("output under a regular file",
             lambda env: _with(env, video_out_path=_file(env, "plain") / "out.mp4"), "is a file"),
        Case("output in an immutable folder", _immutable_folder, "does not accept new files"),
        Case("output in a read-only folder", _read_only_folder, "does not accept new files"),
        Case("output under /proc", lambda env: _with(env, video_out_path="/proc/latentsync-out.mp4"),
             "does not accept new files"),
        Case("output is an existing folder", lambda env: _with(env, video_out_path=_folder(env, "dir.mp4")),
             "existing folder"),
        # 7. misleading messages
        Case("output without extension", lambda env: _with(env, video_out_path=env.out / "out"), "must end in .mp4"),
        Case("output with a non-video extension", lambda env: _with(env, video_out_path=env.out / "out.txt"),
             "must end in .mp4"),
        Case("video is a folder", lambda env: _with(env, video_path=env.inputs), "is a folder"),
        Case("audio is /dev/zero", lambda env: _with(env, audio_path="/dev/zero"), "not a regular file"),
        Case("empty config file", lambda env: _config(env, ""), "no value for"),
        Case("config named by an empty string", lambda env: _with(env, config=""), "--config is empty"),
        Case("text file as UNet checkpoint", lambda env: _with(env, inference_ckpt_path=extra["text_ckpt"]),
             "not a pytorch weights file"),
        Case("UNet checkpoint as Whisper", lambda env: _with(env, whisper_path=env.models.unet_ckpt),
             "not an openai-whisper checkpoint"),
        Case("video without audio as audio", _video_without_audio_as_audio, "no audio stream"),
        Case("face_index 5 with one face", lambda env: _with(env, face_index=5), "at most 1 face"),
        Case("face_index -1", lambda env: _with(env, face_index=-1), "counts faces from 0"),
        Case("unknown device", lambda env: _with(env, device="tpu"), "invalid choice"),
        Case("unknown flag", lambda env: [*_out(env), "--frobnicate"], "unrecognized arguments"),
        Case("seed below -1", lambda env: _with(env, seed=-5), "--seed must be"),
        Case("guidance_scale nan", lambda env: _with(env, guidance_scale="nan"), "--guidance_scale"),
        Case("missing video_out_path", lambda env: ["--video_path", str(env.video), "--audio_path", str(env.audio),
                                                    "--config", str(_file(env, "c.yaml", _no_output_config()))],
             "missing --video_out_path"),
        # bad media, already handled well before: must stay so
        *(bad_input(name) for name in bad),
    ]


def _no_output_config() -> str:
    text = (REPO_ROOT / "configs" / "inference.yaml").read_text()
    return "\n".join(line for line in text.splitlines() if not line.startswith("video_out_path"))


@pytest.fixture(scope="module")
def table(tmp_path_factory, media):
    inputs = tmp_path_factory.mktemp("table_inputs")
    bad = _bad_inputs(inputs, media)
    extra = _extra_inputs(inputs, media)
    shutil.copy(media["video_1s"], inputs / "face.mp4")
    shutil.copy(media["audio_1s"], inputs / "speech.wav")
    return inputs, _cases(extra, bad)


def _case_names() -> list[str]:
    dummy = {name: (None, None, ()) for name in ("missing video", "missing audio", "corrupt video",
                                                 "video without frames", "audio without samples", "text named .wav",
                                                 "text named .mp4", "no face at all")}
    return [case.name for case in _cases({}, dummy)]


@pytest.mark.parametrize("name", _case_names())
def test_bad_input_or_flag(name, table, tiny_models, tmp_path, capfd):  # noqa: F811
    inputs, cases = table
    case = next(c for c in cases if c.name == name)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    env = Env(inputs, out, inputs / "face.mp4", inputs / "speech.wav", tiny_models)
    before = _digest(inputs)
    models_before = _digest(tiny_models.unet_ckpt.parent.parent)
    try:
        extra = case.args(env)
        out_before = set(os.listdir(out))
        code = main([*model_args(tiny_models, work), *extra])
    finally:
        subprocess.run(["chattr", "-i", str(out / "locked")], capture_output=True)
        if (out / "ro").exists():
            (out / "ro").chmod(0o755)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if case.needle is None:
        assert code == 0, err
        assert_valid_output(out / "out.mp4", 1.0)
        assert not (out / "temp").exists(), "the temp folder this run created is left"
    else:
        assert code == 1, err
        assert lines and lines[-1].startswith("error:"), err
        assert case.needle.lower() in lines[-1].lower(), lines[-1]
        assert sum(line.startswith("error:") for line in lines) == 1, err
        assert "weights_only" not in err and "trailing '?'" not in err
        assert set(os.listdir(out)) == out_before, "output or partial file left"
    assert _leftovers(out, inputs, work) == []
    assert list(work.iterdir()) == [], "working folder left"
    assert _digest(inputs) == before, "an input changed"
    assert _digest(tiny_models.unet_ckpt.parent.parent) == models_before


# --------------------------------------------------------------------------- 4. batch


def test_batch_tries_every_row(tiny_models, media, tmp_path, capfd):  # noqa: F811
    plain = tmp_path / "plain"
    plain.write_text("a file, not a folder")
    video, audio = media["video_1s"], media["audio_1s"]
    rows = [
        f"{video},{audio},{plain}/under_a_file.mp4",  # unwritable: refused before any work
        f"{video},{audio},{video}",  # would replace its input
        f"{video},{audio},ok.mp4",  # good rows after the bad ones still run
        f"{video},{tmp_path / 'missing.wav'},never.mp4",
    ]
    listing = tmp_path / "pairs.csv"
    listing.write_text("\n".join(rows) + "\n")
    before = _digest(video.parent)
    code = main([*model_args(tiny_models, tmp_path / "work"), "--batch", str(listing), "--temp_dir",
                 str(tmp_path / "work")])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 3, err
    assert any("is a file" in line for line in failed) and any("is the input" in line for line in failed)
    assert any("not found" in line for line in failed)
    assert err.strip().splitlines()[-1] == "error: 3 of 4 rows failed (listed above)"
    assert_valid_output(tmp_path / "ok.mp4", 1.0)
    assert not (tmp_path / "never.mp4").exists()
    assert _digest(video.parent) == before
    assert not (tmp_path / "work").exists()


# --------------------------------------------------------------------------- 2. phone videos


def test_rotated_phone_video_comes_out_upright(tiny_models, media, tmp_path, capfd):  # noqa: F811
    upright = tmp_path / "upright.mp4"
    write_talking_video(upright, media["speech"][SR // 2: SR // 2 + SR], size=(96, 128), with_audio=False)
    # As a phone stores it: pixels turned clockwise (landscape), plus a display matrix turning them back.
    sideways = tmp_path / "sideways.mp4"
    phone = tmp_path / "phone.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(upright), "-vf", "transpose=1",
                    "-c:v", "libx264", "-crf", "12", str(sideways)], check=True)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(sideways), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(phone)], check=True)
    info = probe_video(phone)
    assert (info.width, info.height, info.rotation) == (96, 128, 90)  # the display size, as a player shows it

    out = tmp_path / "out.mp4"
    code = main([*model_args(tiny_models, tmp_path), "--video_path", str(phone), "--audio_path",
                 str(media["audio_1s"]), "--video_out_path", str(out)])
    assert code == 0, capfd.readouterr().err
    assert_valid_output(out, 1.0, size=(96, 128))
    assert probe_video(out).rotation == 0  # upright pixels, no matrix needed
    source = np.stack(list(VideoReader(upright))).astype(np.int16)
    result = np.stack(list(VideoReader(out))).astype(np.int16)
    top = slice(0, 50)  # hair and forehead: far from the generated mouth
    assert np.abs(result[:, top] - source[:, top]).mean() < 6
    turned = np.stack([np.rot90(f, 2) for f in source])  # a wrong turn would look like this
    assert np.abs(result[:, top] - turned[:, top]).mean() > 20


# --------------------------------------------------------------------------- 8. SIGINT / SIGTERM, reruns


def _cli_command(models, work: Path, video: Path, audio: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scripts.inference", *model_args(models, work), "--video_path", str(video),
            "--audio_path", str(audio), "--video_out_path", str(out), *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_mid_run_cleans_up_and_a_rerun_succeeds(tiny_models, media, tmp_path, sig, code):  # noqa: F811
    work, out_dir = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out_dir.mkdir()
    long_audio = tmp_path / "long.wav"
    write_wav(long_audio, np.tile(media["speech"], 2)[: 4 * SR])  # longer than the video: frames.bin is used
    out = out_dir / "out.mp4"
    cmd = _cli_command(tiny_models, work, media["video_1s"], long_audio, out, "--inference_steps", "20")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            spills = list(work.glob(f"{WORK_PREFIX}*/frames.bin"))
            if spills:
                break
            time.sleep(0.05)
        assert spills, "the run never reached the denoising stage"
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: interrupted by {signal.Signals(sig).name}")
    assert list(out_dir.iterdir()) == [] and list(work.iterdir()) == []

    # A killed run (SIGKILL, power loss) leaves files no handler could remove; the rerun removes
    # them, but never those of a process still alive or files that are not ours.
    dead = _dead_pid()
    stale = [out_dir / f"{TEMP_PREFIX}{dead}-out.mp4-x1.mp4", work / f"{WORK_PREFIX}{dead}-abc"]
    stale[0].write_bytes(b"half")
    stale[1].mkdir()
    (stale[1] / "frames.bin").write_bytes(b"spill")
    alive = [out_dir / f"{TEMP_PREFIX}{os.getpid()}-out.mp4-x2.mp4", out_dir / ".tmp-someone-else.mp4"]
    for path in alive:
        path.write_bytes(b"keep")
    rerun = run_group(_cli_command(tiny_models, work, media["video_1s"], media["audio_1s"], out), timeout=300,
                      cwd=REPO_ROOT, env=_env())
    assert rerun.returncode == 0, rerun.stderr
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"keep" for path in alive)
    assert list(work.iterdir()) == []
    for path in alive:
        path.unlink()
    assert_valid_output(out, 1.0)


# --------------------------------------------------------------------------- 9. determinism


def test_same_seed_same_frames_in_separate_processes(tiny_models, media, tmp_path):  # noqa: F811
    frames = []
    for run in range(2):
        out = tmp_path / f"run{run}.mp4"
        done = run_group(_cli_command(tiny_models, tmp_path, media["video"], media["audio_1s"], out,
                                      "--inference_steps", "3", "--seed", "1247"),
                         timeout=300, cwd=REPO_ROOT, env=_env())
        assert done.returncode == 0, done.stderr
        frames.append(np.stack(list(VideoReader(out))))
    assert frames[0].shape == frames[1].shape
    assert np.array_equal(frames[0], frames[1])


# --------------------------------------------------------------------------- 5. and 6.: any folder, quiet


def test_cli_and_inference_sh_from_another_folder(tiny_models, media, tmp_path):  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(media["video_1s"], elsewhere / "face.mp4")
    shutil.copy(media["audio_1s"], elsewhere / "speech.wav")
    work = tmp_path / "work"
    work.mkdir()
    # The tiny UNet config names the mask project-relatively (latentsync/face/mask.png), as the
    # shipped configs do; user paths are relative to the caller's folder.
    models = model_args(tiny_models, work)
    cli = [sys.executable, "-P", "-m", "scripts.inference", *models, "--video_path", "face.mp4",
           "--audio_path", "speech.wav", "--video_out_path", "synced.mp4", "--verbose"]
    done = run_group(cli, timeout=300, cwd=elsewhere, env=_env())
    assert done.returncode == 0, done.stderr
    assert_valid_output(elsewhere / "synced.mp4", 1.0)
    # --verbose lets the face detector's native log lines through...
    assert "absl" in done.stderr or "W0000" in done.stderr or "XNNPACK" in done.stderr

    # ...which are silenced otherwise: the error line is the last line. inference.sh finds the
    # project's .venv and configs itself.
    env = {key: value for key, value in _env().items() if key not in ("PYTHONPATH", "PYTHON")}
    shell = run_group(["bash", str(REPO_ROOT / "inference.sh"), *models, "--video_path", "face.mp4",
                       "--audio_path", "speech.wav", "--video_out_path", "never.mp4", "--face_index", "5"],
                      timeout=300, cwd=elsewhere, env=env)
    assert shell.returncode == 1, shell.stderr
    lines = shell.stderr.strip().splitlines()
    assert lines[-1].startswith("error: face_index 5"), shell.stderr
    assert not any(marker in shell.stderr for marker in ("absl", "W0000", "XNNPACK", "inference_feedback"))
    assert not (elsewhere / "never.mp4").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["face.mp4", "speech.wav", "synced.mp4"]
    assert list(work.iterdir()) == []


def test_output_is_checked_before_any_model_loads(tiny_models, media, tmp_path, monkeypatch, capfd):  # noqa: F811
    def no_models(*args, **kwargs):
        raise AssertionError("models were loaded before the output path was checked")

    monkeypatch.setattr("scripts.inference.load_pipeline_for", no_models)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code = main([*model_args(tiny_models, tmp_path), "--video_path", str(media["video_1s"]), "--audio_path",
                 str(media["audio_1s"]), "--video_out_path", str(blocker / "out.mp4")])
    assert code == 1
    assert capfd.readouterr().err.strip().splitlines()[-1].endswith("is a file")

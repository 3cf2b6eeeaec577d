"""The preprocessing pipeline, the evaluation scripts and the web demo's --temp_dir as a careless or
unlucky user meets them (issue 19, part A). Whatever happens: exit status and the last stderr line
as stated (one ``error:`` line, no traceback), inputs byte-identical, nothing foreign deleted
(a user's ``raw/.tmp-notes.txt`` included), nothing of ours left behind.

The table runs each entry point's ``main()`` in-process with file-descriptor capture; the shell
launchers and a background job's Ctrl-C run real processes. Interrupts are deterministic: a
wrapper around ffmpeg (a test double on PATH) makes the first transcode of ``slow.mp4`` loop its
input forever and writes its pid to a marker file; the signal is sent once the marker exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from latentsync.media.probe import probe_video
from latentsync.utils.files import TEMP_PREFIX, WORK_PREFIX
from preprocess import data_processing_pipeline as pipeline
from tests.conftest import REPO_ROOT
from tests.preprocess.raw_set import speech
from tests.processes import run_group
from tools.synthetic_media import write_talking_video

# Tiny clips: 1.4 s talking heads, cut into one 1-2 s clip each and aligned at 64 px.
FAST = ["--skip_sync", "--skip_quality", "--device", "cpu", "--total_num_workers", "1", "--min_clip_seconds", "1",
        "--max_clip_seconds", "2", "--resolution", "64"]
FINALS = {"a_000.mp4", "slow_000.mp4"}
INTERRUPTED = "; finished items are kept and a rerun does the rest"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _ours(folder: Path) -> list[str]:
    """Temporary files and working folders of this project (by their prefixes) below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith((TEMP_PREFIX, WORK_PREFIX)))


# --------------------------------------------------------------------------- the case folder


@dataclass(frozen=True)
class Env:
    root: Path  # the pipeline's default output folder: the input folder's parent
    raw: Path  # the input videos (a.mp4, slow.mp4) and the user's own files
    user: dict[str, bytes]  # a user's files (relative to root) that no run may touch
    planted: frozenset[str]  # names with our prefixes that must survive (a live process's, a user's)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for seed, name in enumerate(("a.mp4", "slow.mp4")):
        write_talking_video(folder / name, speech(1.4, seed), size=(128, 128), with_audio=True, seed=seed)
    return folder


def _env(tmp_path: Path, videos: Path) -> Env:
    root = tmp_path / "case"
    raw = root / "raw"
    raw.mkdir(parents=True)
    for video in videos.iterdir():
        shutil.copy2(video, raw / video.name)
    dead = _dead_pid()
    user = {  # the files, one named like our own temporaries, and one next to the outputs
        "raw/.tmp-notes.txt": b"my notes\n",
        "bad/.tmp-keep.txt": b"keep me\n",
        f"raw/{TEMP_PREFIX}{dead}-mine.mp4": b"a user's file with our prefix, in the input\n",
        ".tmp-beside-outputs.txt": b"not the pipeline's\n",
    }
    for name, data in user.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return Env(root, raw, user, frozenset(name for name in user if Path(name).name.startswith(TEMP_PREFIX)))


def _assert_files(env: Env, inputs_before: dict, extra_planted: frozenset = frozenset()) -> None:
    assert _digest(env.raw) == inputs_before, "an input changed"
    for name, data in env.user.items():
        assert (env.root / name).read_bytes() == data, f"a user's file was touched: {name}"
    left = [p for p in _ours(env.root) if p not in env.planted | extra_planted]
    assert left == [], f"left behind: {left}"
    assert not (env.root / ".work").exists(), "the working folder this run made is left"


def _assert_outcome(code: int, err: str, expected: int, needle: str | None) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    if needle is None:
        assert code == expected, err
        assert not any(line.startswith("error:") for line in lines), err
        return
    assert code == expected, err
    assert lines and lines[-1].startswith("error:"), err
    assert needle in lines[-1], lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1, err


def _finals(env: Env) -> set[str]:
    folder = env.root / pipeline.FINAL_DIR
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _records(env: Env) -> list[dict]:
    """Every stored record of every step."""
    return [line for path in (env.root / ".state").rglob("*.json") for line in json.loads(path.read_text())]


# --------------------------------------------------------------------------- rows: the pipeline, in-process


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Env], list[str]]  # the command line of the asserted run (after ``before``)
    code: int
    needle: str | None  # in the last stderr line; None: a run that must succeed
    before: Callable[[Env], None] | None = None
    after: Callable[[Env, str, str], None] | None = None  # extra checks (env, stdout, stderr)
    planted: Callable[[Env], frozenset] = lambda env: frozenset()  # our-prefix names ``before`` made that must stay


def _run(env: Env, *extra: str) -> None:
    assert pipeline.main(["--input_dir", str(env.raw), *FAST, *extra]) == 0


def _plant_stale(env: Env) -> None:
    """What a killed run left (dead pid), what a running one is writing (live pid), and a stranger's file."""
    dead, alive = _dead_pid(), os.getpid()
    (env.root / "resampled").mkdir()
    (env.root / "resampled" / f"{TEMP_PREFIX}{dead}-a.mp4-x1.mp4").write_bytes(b"half")
    (env.root / "resampled" / f"{TEMP_PREFIX}{alive}-a.mp4-x2.mp4").write_bytes(b"being written")
    (env.root / "resampled" / ".tmp-someone-else.mp4").write_bytes(b"not ours")
    (env.root / ".work" / f"{WORK_PREFIX}{dead}-abc").mkdir(parents=True)
    (env.root / ".work" / f"{WORK_PREFIX}{dead}-abc" / "video.mp4").write_bytes(b"spill")


def _after_stale(env: Env, out: str, err: str) -> None:
    names = {p.name for p in (env.root / "resampled").iterdir()}
    assert f"{TEMP_PREFIX}{os.getpid()}-a.mp4-x2.mp4" in names and ".tmp-someone-else.mp4" in names
    assert not any(name.endswith("-x1.mp4") for name in names), "a killed run's temporary file is left"
    assert list((env.root / ".work").iterdir()) == [], "a killed run's working folder is left"
    shutil.rmtree(env.root / ".work")  # it existed before the run: the run keeps it
    assert _finals(env) == FINALS


def _resolution_change(env: Env) -> None:
    _run(env)
    env.root.joinpath("mtimes.json").write_text(json.dumps(
        {p.name: p.stat().st_mtime_ns for p in (env.root / "resampled").iterdir()}))


def _after_resolution_change(env: Env, out: str, err: str) -> None:
    assert _finals(env) == FINALS
    for name in FINALS:
        info = probe_video(env.root / pipeline.FINAL_DIR / name)
        assert (info.width, info.height) == (96, 96), name
    aligned = [line for line in pipeline_manifest(env, "affine_transform")]
    assert {line["settings"]["resolution"] for line in aligned} == {96}
    # Steps the resolution does not change were not redone.
    before = json.loads(env.root.joinpath("mtimes.json").read_text())
    env.root.joinpath("mtimes.json").unlink()
    assert before == {p.name: p.stat().st_mtime_ns for p in (env.root / "resampled").iterdir()}
    assert "superseded" not in out


def pipeline_manifest(env: Env, step: str) -> list[dict]:
    with open(env.root / "manifests" / f"{step}.jsonl") as f:
        return [json.loads(line) for line in f]


def _source_deleted(env: Env) -> None:
    _run(env)
    (env.raw / "slow.mp4").unlink()


def _after_source_deleted(env: Env, out: str, err: str) -> None:
    assert _finals(env) == {"a_000.mp4"}
    assert "final clips: 1;" in out
    assert "superseded: 1 final clip and 3 intermediate files" in out, out
    [run] = list((env.root / "superseded").iterdir())
    moved = (run / "moved.txt").read_text().split()
    assert sorted(moved) == sorted(["resampled/slow.mp4", "segmented/slow_000.mp4",
                                    "affine_transformed/slow_000.mp4", "high_visual_quality/slow_000.mp4"])
    assert all((run / path).is_file() for path in moved)  # moved, never deleted
    summary = (env.root / "manifests" / "summary.txt").read_text()
    assert "final clips: 1;" in summary and "superseded:" in summary


def _foreign_final(env: Env) -> None:
    _run(env)
    (env.root / pipeline.FINAL_DIR / "mine.mp4").write_bytes(b"my own clip")


def _after_foreign_final(env: Env, out: str, err: str) -> None:
    assert (env.root / pipeline.FINAL_DIR / "mine.mp4").read_bytes() == b"my own clip"
    assert "not ours: high_visual_quality/ holds 1 file this pipeline did not make (left as is): " in out and "mine.mp4" in out
    assert "final clips: 2;" in out


def _final_deleted(env: Env) -> None:
    _run(env)
    (env.root / pipeline.FINAL_DIR / "a_000.mp4").unlink()


def _after_final_deleted(env: Env, out: str, err: str) -> None:
    assert _finals(env) == FINALS and "final clips: 2;" in out


def _after_all_models_missing(env: Env, out: str, err: str) -> None:
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: 3 model files not found"), line
    assert all(name in line for name in ("syncnet_v2.model", "sfd_face.pth", "koniq_pretrained.pkl"))


def _file(env: Env, name: str) -> Path:
    path = env.root / name
    path.write_text("a file, not a folder\n")
    return path


def _flag(flag: str, value: str) -> Callable[[Env], list[str]]:
    return lambda env: ["--input_dir", str(env.raw), *FAST, flag, value]


def _missing(env: Env, *names: str) -> list[str]:
    return [str(env.root / "models" / name) for name in names]


def _pipeline_cases() -> list[Case]:
    numeric = [
        ("--resolution", "0", "argument --resolution: must be an even integer between 16 and 4096, got '0'"),
        ("--resolution", "257", "argument --resolution: must be an even integer between 16 and 4096, got '257'"),
        ("--total_num_workers", "0", "argument --total_num_workers: must be an integer >= 1, got '0'"),
        ("--per_gpu_num_workers", "-1", "argument --per_gpu_num_workers: must be an integer >= 1"),
        ("--min_clip_seconds", "0", "argument --min_clip_seconds: must be a number >= 0.04, got '0'"),
        ("--max_clip_seconds", "nan", "argument --max_clip_seconds: must be a number >= 0.04, got 'nan'"),
        ("--shot_threshold", "0", "argument --shot_threshold: must be a number > 0 and <= 255"),
        ("--max_face_lost", "1.5", "argument --max_face_lost: must be a number between 0 and 1, got '1.5'"),
        ("--max_alignment_residual", "-0.1", "argument --max_alignment_residual: must be a number > 0"),
        ("--sync_conf_threshold", "inf", "argument --sync_conf_threshold: must be a number, got 'inf'"),
        ("--max_offset", "16", "argument --max_offset: must be an integer between 0 and 15, got '16'"),
        ("--quality_threshold", "101", "argument --quality_threshold: must be a number between 0 and 100"),
        ("--resolution", "abc", "argument --resolution: must be an even integer between 16 and 4096, got 'abc'"),
    ]
    return [
        # data loss: what the pipeline removes, and where
        Case("user's .tmp-* files in and beside the input survive; only our stale temporaries go",
             lambda env: ["--input_dir", str(env.raw), *FAST], 0, None, _plant_stale, _after_stale,
             lambda env: frozenset({f"resampled/{TEMP_PREFIX}{os.getpid()}-a.mp4-x2.mp4"})),
        # settings and sources that change
        Case("rerun with another --resolution redoes the clips", _flag("--resolution", "96"), 0, None,
             _resolution_change, _after_resolution_change),
        Case("rerun after a source was deleted moves its outputs aside and says so",
             lambda env: ["--input_dir", str(env.raw), *FAST], 0, None, _source_deleted, _after_source_deleted),
        Case("a file of the user's in high_visual_quality/ is reported and kept",
             lambda env: ["--input_dir", str(env.raw), *FAST], 0, None, _foreign_final, _after_foreign_final),
        Case("a final clip deleted by hand is made again", lambda env: ["--input_dir", str(env.raw), *FAST], 0, None,
             _final_deleted, _after_final_deleted),
        # numbers out of range: refused while parsing
        *(Case(f"{flag} {value}", _flag(flag, value), 1, needle) for flag, value, needle in numeric),
        Case("--max_clip_seconds below --min_clip_seconds", _flag("--min_clip_seconds", "3"), 1,
             "--max_clip_seconds (2) must be >= --min_clip_seconds (3)"),
        # folders
        Case("--output_dir is an existing file", lambda env: [*_flag("--output_dir", str(_file(env, "out")))(env)],
             1, "--output_dir: folder"),
        Case("--output_dir under a file", lambda env: _flag("--output_dir", str(_file(env, "plain") / "out"))(env), 1,
             "which is a file"),
        Case("--temp_dir is an existing file", lambda env: _flag("--temp_dir", str(_file(env, "tmp")))(env), 1,
             "--temp_dir: folder"),
        Case("--output_dir inside --input_dir", lambda env: _flag("--output_dir", str(env.raw / "out"))(env), 1,
             "lies inside --input_dir"),
        Case("--temp_dir inside --input_dir", lambda env: _flag("--temp_dir", str(env.raw / "work"))(env), 1,
             "lies inside --input_dir"),
        Case("--input_dir does not exist", lambda env: ["--input_dir", str(env.root / "nope"), *FAST], 1,
             "does not exist"),
        Case("--input_dir is a file", lambda env: ["--input_dir", str(env.raw / "a.mp4"), *FAST], 1,
             "is a file, not a folder"),
        Case("--input_dir without videos", lambda env: ["--input_dir", str(env.root / "bad"), *FAST], 1,
             "no videos (.mp4"),
        # model files: all named at once, with the flags that run without them
        Case("every model file missing", lambda env: [
            "--input_dir", str(env.raw), "--device", "cpu", "--classic_syncnet_path", *_missing(env, "syncnet_v2.model"),
            "--s3fd_path", *_missing(env, "sfd_face.pth"), "--quality_model_path", *_missing(env, "koniq_pretrained.pkl"),
        ], 1, "or pass --skip_sync --skip_quality to run without those steps", after=_after_all_models_missing),
        Case("quality model missing with --skip_sync", lambda env: [
            "--input_dir", str(env.raw), "--device", "cpu", "--skip_sync",
            "--quality_model_path", *_missing(env, "koniq_pretrained.pkl")],
             1, "koniq_pretrained.pkl; fetch it with"),
        Case("--sync_scorer stable without its files",
             lambda env: ["--input_dir", str(env.raw), "--skip_quality", "--sync_scorer", "stable"], 1,
             "--sync_scorer stable needs --syncnet_config and --syncnet_ckpt files"),
        # usage
        Case("unknown flag", lambda env: ["--input_dir", str(env.raw), "--frobnicate"], 1, "unrecognized arguments"),
        Case("unknown device", _flag("--device", "tpu"), 1, "argument --device: invalid choice: 'tpu'"),
        Case("--executor ray without ray installed", _flag("--executor", "ray"), 1,
             "--executor ray needs the optional package ray"),
    ]


PIPELINE_CASES = {case.name: case for case in _pipeline_cases()}


@pytest.mark.parametrize("name", list(PIPELINE_CASES))
def test_pipeline(name, videos, tmp_path, capfd):
    case = PIPELINE_CASES[name]
    if "ray" in name and _has_module("ray"):
        pytest.skip("ray is installed here")
    env = _env(tmp_path, videos)
    if case.before:
        case.before(env)
    inputs = _digest(env.raw)
    argv = case.args(env)
    listing = sorted(p.name for p in env.root.iterdir())
    capfd.readouterr()
    code = pipeline.main(argv)
    out, err = capfd.readouterr()
    _assert_outcome(code, err, case.code, case.needle)
    if case.needle is not None:
        assert sorted(p.name for p in env.root.iterdir()) == listing, "a refused run created something"
    if case.after:
        case.after(env, out, err)
    _assert_files(env, inputs, case.planted(env))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------- interrupts


@pytest.fixture()
def slow_ffmpeg(tmp_path, monkeypatch) -> dict[str, str]:
    """PATH and variables that put the looping ffmpeg wrapper (a test double) in front of the real one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "ffmpeg"
    wrapper.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        # TEST DOUBLE around the real ffmpeg: the first call that reads slow.mp4 writes its pid to the
        # marker and becomes a real ffmpeg whose input loops forever; every other call is plain ffmpeg.
        if [[ "$*" == *"/slow.mp4"* && ! -e "$LS_TEST_MARKER" ]]; then
            echo $$ > "$LS_TEST_MARKER.tmp" && mv "$LS_TEST_MARKER.tmp" "$LS_TEST_MARKER"
            exec "$LS_TEST_FFMPEG" -re -stream_loop -1 "$@"
        fi
        exec "$LS_TEST_FFMPEG" "$@"
    """))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{folder}:{os.environ['PATH']}", "LS_TEST_MARKER": str(tmp_path / "ffmpeg.pid"),
           "LS_TEST_FFMPEG": shutil.which("ffmpeg")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _when_started(marker: Path, act: Callable[[int], None]) -> tuple[threading.Thread, threading.Event]:
    """A thread that waits for the wrapper's marker (the slow transcode has started), then acts on its pid."""
    finished = threading.Event()

    def watch():
        while not marker.exists():
            if finished.wait(0.02):
                return
        act(int(marker.read_text()))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, finished


def _assert_not_dropped(env: Env) -> None:
    """The video interrupted while resampled is kept by the first step and has no record of the second
    (neither kept nor dropped: a rerun does it)."""
    slow = [line for line in _records(env) if line["source"] == str(env.raw / "slow.mp4")]
    assert slow and all(line["kept"] for line in slow), slow
    assert not any(os.sep + "resampled" + os.sep in (line["output"] or "") for line in slow), slow


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, "1"), (signal.SIGTERM, "2")])
def test_interrupt_in_process(sig, workers, videos, tmp_path, slow_ffmpeg, capfd):
    """SIGINT / SIGTERM to the pipeline (``kill PID``): with one worker it runs ffmpeg itself, with two
    the pool's worker does and must be stopped by the pipeline."""
    env = _env(tmp_path, videos)
    inputs = _digest(env.raw)
    pids = []
    thread, finished = _when_started(Path(slow_ffmpeg["LS_TEST_MARKER"]),
                                     lambda pid: (pids.append(pid), os.kill(os.getpid(), sig)))
    try:
        code = pipeline.main(["--input_dir", str(env.raw), *FAST, "--total_num_workers", workers])
    finally:
        finished.set()
        thread.join()
    err = capfd.readouterr().err
    assert pids, "the slow transcode never started"
    _assert_outcome(code, err, 128 + sig, f"interrupted by {signal.Signals(sig).name}{INTERRUPTED}")
    assert _gone(pids[0]), "ffmpeg outlived the run"
    _assert_not_dropped(env)
    _assert_files(env, inputs)
    _run(env)  # the rerun does the interrupted video
    assert _finals(env) == FINALS
    _assert_files(env, inputs)


def test_ffmpeg_alone_stopped_is_a_failure_retried_never_a_drop(videos, tmp_path, slow_ffmpeg, capfd, caplog):
    """The issue's background job: Ctrl-C reached ffmpeg (exit 255) but not the pipeline."""
    env = _env(tmp_path, videos)
    inputs = _digest(env.raw)
    thread, finished = _when_started(Path(slow_ffmpeg["LS_TEST_MARKER"]), lambda pid: os.kill(pid, signal.SIGINT))
    try:
        code = pipeline.main(["--input_dir", str(env.raw), *FAST])
    finally:
        finished.set()
        thread.join()
    err = capfd.readouterr().err
    _assert_outcome(code, err, 1, "1 items failed unexpectedly (see the log); a rerun retries them")
    assert "ffmpeg was stopped by a signal" in caplog.text and "could not transcode" not in caplog.text + err
    assert _finals(env) == {"a_000.mp4"}
    _assert_not_dropped(env)
    _assert_files(env, inputs)
    _run(env)
    assert _finals(env) == FINALS


def test_ctrl_c_to_a_background_job(videos, tmp_path, slow_ffmpeg):
    """Started by a script with ``&`` (SIGINT ignored), Ctrl-C reaches the job's whole process group."""
    env = _env(tmp_path, videos)
    inputs = _digest(env.raw)
    marker = Path(slow_ffmpeg["LS_TEST_MARKER"])
    cmd = [sys.executable, "-m", "preprocess.data_processing_pipeline", "--input_dir", str(env.raw), *FAST]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 600  # bounds a hang only
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "the slow transcode never started: " + proc.communicate()[1]
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    _assert_outcome(proc.returncode, err, 130, f"interrupted by SIGINT{INTERRUPTED}")
    assert _gone(int(marker.read_text()))
    _assert_not_dropped(env)
    _assert_files(env, inputs)
    _run(env)
    assert _finals(env) == FINALS


# --------------------------------------------------------------------------- shell launchers from another folder


def test_an_evaluation_stopped_by_a_signal_is_one_line_and_leaves_its_earlier_table(videos, tmp_path, monkeypatch,
                                                                                    capfd):
    """SIGTERM while an evaluation loads its models: exit 143, one line, the earlier result files as they were."""
    from eval import eval_fvd

    def stopped(*_):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises in this frame long before
        raise AssertionError("the signal did not stop the evaluation")

    env = _env(tmp_path, videos)
    table = env.root / "fvd"
    earlier = {table.with_suffix(s): f"earlier {s}\n" for s in (".csv", ".json", ".md")}
    for path, text in earlier.items():
        path.write_text(text)
    monkeypatch.setattr(eval_fvd, "require_model_files", lambda paths: None)
    monkeypatch.setattr(eval_fvd, "load_i3d", stopped)
    handler = signal.getsignal(signal.SIGTERM)
    capfd.readouterr()
    code = eval_fvd.main(["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--output", str(table)])
    out, err = capfd.readouterr()
    _assert_outcome(code, err, 128 + signal.SIGTERM, "error: interrupted by SIGTERM; result files are written whole")
    assert not out.strip(), out
    assert {path: path.read_text() for path in earlier} == earlier
    assert signal.getsignal(signal.SIGTERM) == handler  # the entry point's handler is gone again


def _shell(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # No virtual environment on PATH and no PYTHONPATH: the launcher finds the project's .venv itself.
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": os.environ.get("HOME", "/tmp")}
    return run_group(["bash", str(REPO_ROOT / script), *args], timeout=300, cwd=cwd, env=env)


def test_pipeline_launcher_from_another_folder(videos, tmp_path):
    env = _env(tmp_path, videos)
    inputs = _digest(env.raw)
    done = _shell("data_processing_pipeline.sh", "--input_dir", "raw", "--resolution", "0", cwd=env.root)
    _assert_outcome(done.returncode, done.stderr, 1, "argument --resolution: must be an even integer")
    _assert_files(env, inputs)


def test_eval_launcher_with_its_default_config_from_another_folder(tmp_path):
    done = _shell("eval/eval_syncnet_acc.sh", "--checkpoint", "missing.pt", "--device", "cpu", cwd=tmp_path)
    _assert_outcome(done.returncode, done.stderr, 1, "SyncNet checkpoint not found: missing.pt")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- rows: evaluation scripts and the web demo


def _eval_main(module: str) -> Callable[[list[str]], int]:
    import importlib

    return importlib.import_module(f"eval.{module}").main


def _eval_cases() -> list[tuple[str, str, Callable[[Env], list[str]], str]]:
    """(name, script, arguments, needle of the error line); every case ends with exit status 1."""
    def video(env):
        return str(env.raw / "a.mp4")

    def models(env, *flags_names):
        return [word for flag, name in flags_names for word in (flag, str(env.root / "models" / name))]

    sync_models = (("--syncnet_path", "syncnet_v2.model"), ("--s3fd_path", "sfd_face.pth"))
    return [
        # outputs that cannot be written: refused before any work
        ("eval_fvd --output is an existing folder", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--output", str(env.root / "bad")],
         "is an existing folder; name a file in it"),
        ("eval_fvd --output under a file", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--output", str(_file(env, "f") / "x")],
         "--output: folder"),
        ("eval_sync_conf --output under a file", "eval_sync_conf",
         lambda env: ["--video_path", video(env), "--output", str(_file(env, "f") / "sync")], "--output: folder"),
        ("hyper_iqa --output under a file", "hyper_iqa",
         lambda env: ["--video_path", video(env), "--output", str(_file(env, "f") / "iqa")], "--output: folder"),
        ("syncnet_detect --output_dir is a file", "syncnet_detect",
         lambda env: ["--video_path", video(env), "--output_dir", str(_file(env, "curves"))], "--output_dir: folder"),
        ("draw_syncnet_lines --output under a file", "draw_syncnet_lines",
         lambda env: [str(env.root / "c.csv"), "--output", str(_file(env, "f") / "x.png")], "--output: folder"),
        ("inference_videos --output_dir is a file", "inference_videos",
         lambda env: ["--eval_list", str(env.root / "e.csv"), "--checkpoint", "x.pt", "--output_dir",
                      str(_file(env, "results"))], "--output_dir: folder"),
        ("eval_all --output_dir is a file", "eval_all",
         lambda env: ["--eval_list", str(env.root / "e.csv"), "--checkpoint", "x.pt", "--output_dir",
                      str(_file(env, "results"))], "--output_dir: folder"),
        # model files: every missing one named at once
        ("eval_sync_conf without its two model files", "eval_sync_conf",
         lambda env: ["--video_path", video(env), *models(env, *sync_models)], "2 model files not found"),
        ("syncnet_detect without its two model files", "syncnet_detect",
         lambda env: ["--video_path", video(env), "--output_dir", str(env.root / "curves"), *models(env, *sync_models)],
         "2 model files not found"),
        ("eval_fvd without I3D and Inception", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw),
                      *models(env, ("--i3d_path", "i3d_torchscript.pt"),
                              ("--inception_path", "pt_inception-2015-12-05-6726825d.pth"))],
         "2 model files not found"),
        ("hyper_iqa without its model file", "hyper_iqa",
         lambda env: ["--video_path", video(env), *models(env, ("--model_path", "koniq_pretrained.pkl"))],
         "model file not found"),
        ("eval_all without any model file", "eval_all",
         lambda env: ["--eval_list", str(_eval_list(env)), "--checkpoint", str(env.root / "unet.pt"),
                      "--output_dir", str(env.root / "results"), *models(
                          env, ("--i3d_path", "i3d_torchscript.pt"), ("--hyperiqa_path", "koniq_pretrained.pkl"),
                          ("--inception_path", "pt_inception-2015-12-05-6726825d.pth"), *sync_models)],
         "5 model files not found"),
        ("eval_syncnet_acc without its checkpoint", "eval_syncnet_acc",
         lambda env: ["--config_path", str(REPO_ROOT / "configs/syncnet/syncnet_tiny_cpu.yaml"), "--checkpoint",
                      str(env.root / "none.pt"), "--device", "cpu"], "SyncNet checkpoint not found"),
        # numbers out of range
        ("eval_fvd --frame_stride 0", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--frame_stride", "0"],
         "argument --frame_stride: must be an integer >= 1, got '0'"),
        ("eval_fvd --batch_size 0", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--batch_size", "0"],
         "argument --batch_size: must be an integer >= 1"),
        ("eval_all --frame_stride -1", "eval_all",
         lambda env: ["--eval_list", "e.csv", "--skip_inference", "--output_dir", "r", "--frame_stride", "-1"],
         "argument --frame_stride: must be an integer >= 1"),
        ("eval_sync_conf --vshift 0", "eval_sync_conf", lambda env: ["--video_path", video(env), "--vshift", "0"],
         "argument --vshift: must be an integer >= 1"),
        ("eval_sync_conf --smooth_kernel 4", "eval_sync_conf",
         lambda env: ["--video_path", video(env), "--smooth_kernel", "4"], "must be an odd integer >= 1, got '4'"),
        ("eval_sync_conf --conf_threshold 1.5", "eval_sync_conf",
         lambda env: ["--video_path", video(env), "--conf_threshold", "1.5"], "must be a number between 0 and 1"),
        ("syncnet_detect --batch_size 0", "syncnet_detect",
         lambda env: ["--video_path", video(env), "--output_dir", "d", "--batch_size", "0"],
         "argument --batch_size: must be an integer >= 1"),
        ("eval_syncnet_acc --num_samples 0", "eval_syncnet_acc",
         lambda env: ["--config_path", "c.yaml", "--num_samples", "0"], "argument --num_samples: must be an integer >= 1"),
        ("eval_syncnet_acc --threshold 2", "eval_syncnet_acc",
         lambda env: ["--config_path", "c.yaml", "--threshold", "2"], "must be a number between -1 and 1"),
        # already right, and must stay so
        ("eval_sync_conf on a missing folder", "eval_sync_conf",
         lambda env: ["--videos_dir", str(env.root / "nope"), *models(env, *sync_models)], "no such video or folder"),
        ("hyper_iqa on a folder without videos", "hyper_iqa",
         lambda env: ["--videos_dir", str(env.root / "bad")], "no videos"),
        ("inference_videos with a bad evaluation list", "inference_videos",
         lambda env: ["--eval_list", str(_text(env, "e.csv", "a.mp4,b.wav,extra\n")), "--checkpoint", "x.pt",
                      "--output_dir", str(env.root / "r")], "expected video,audio, got 3 fields"),
        ("draw_syncnet_lines without the curves file", "draw_syncnet_lines",
         lambda env: [str(env.root / "none.csv"), "--output", str(env.root / "x.png")], "curves file not found"),
        ("eval_all without --checkpoint", "eval_all", lambda env: ["--eval_list", "e.csv", "--output_dir", "r"],
         "--checkpoint is required unless --skip_inference is given"),
        ("eval_fvd unknown device", "eval_fvd",
         lambda env: ["--real_dir", str(env.raw), "--fake_dir", str(env.raw), "--device", "tpu"], "invalid choice"),
    ]


def _text(env: Env, name: str, text: str) -> Path:
    path = env.root / name
    path.write_text(text)
    return path


def _eval_list(env: Env) -> Path:
    return _text(env, "eval.csv", f"video,audio\n{env.raw / 'a.mp4'},{env.raw / 'a.mp4'}\n")


EVAL_CASES = {name: (script, args, needle) for name, script, args, needle in _eval_cases()}


@pytest.mark.parametrize("name", list(EVAL_CASES))
def test_eval(name, videos, tmp_path, capfd):
    script, args, needle = EVAL_CASES[name]
    env = _env(tmp_path, videos)
    inputs = _digest(env.raw)
    argv = args(env)
    listing = sorted(p.name for p in env.root.iterdir())
    capfd.readouterr()
    code = _eval_main(script)(argv)
    _assert_outcome(code, capfd.readouterr().err, 1, needle)
    assert sorted(p.name for p in env.root.iterdir()) == listing, "a refused run created something"
    _assert_files(env, inputs)


def test_gradio_temp_dir(tmp_path, monkeypatch, capfd):
    """--temp_dir that does not exist yet is made (like the CLI's), and removed at exit if it was; a file is one line."""
    import gradio_app

    seen = []

    def serve(args, auth):  # the server itself is not started here: only the app's workspace, which failed
        workspace = gradio_app.Workspace(args.temp_dir)
        seen.append(os.path.isdir(workspace.root))
        workspace.close()
        return 0

    monkeypatch.setattr(gradio_app, "serve", serve)
    missing = tmp_path / "missing" / "temp"
    assert gradio_app.main(["--temp_dir", str(missing)]) == 0
    assert seen == [True] and not missing.exists() and list(tmp_path.iterdir()) == []

    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert gradio_app.main(["--temp_dir", str(kept)]) == 0
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]

    plain = tmp_path / "plain"
    plain.write_text("a file")
    capfd.readouterr()
    code = gradio_app.main(["--temp_dir", str(plain)])
    _assert_outcome(code, capfd.readouterr().err, 2, f"error: --temp_dir: folder '{plain}' is a file")
    assert plain.read_text() == "a file" and seen == [True, True]


def test_every_setting_a_step_reads_is_stored_in_its_records():
    """The options each step declares (stored in its records; a change redoes it) cover every setting its module reads."""
    import ast
    import inspect
    from argparse import Namespace

    from preprocess.settings import Settings

    not_outputs = {"output_dir", "temp_dir", "device"}  # where files go, and where models run
    args = Namespace(filter_high_resolution=True, skip_sync=False, skip_quality=False)
    for step in pipeline.build_steps(args, Settings(output_dir="/o", temp_dir="/t")):
        module = inspect.getmodule(step.process)
        tree = ast.parse(inspect.getsource(module))
        read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id == "settings"}
        if module is pipeline:
            read = {"output_dir"}  # the publish step: this module reads settings for every step
        assert read - not_outputs <= set(step.options), (step.name, sorted(read - not_outputs - set(step.options)))

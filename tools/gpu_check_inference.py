"""Inference parts of ``tools/gpu_check.py``: the CLI end to end, determinism, and our side of the upstream check.

Everything runs through the public entry points, in child processes: ``python -m scripts.inference``
(run as ``__main__`` under :func:`cli_timer`, which only records when the progress hook reports each
stage and the peak GPU memory) and :func:`latentsync.pipelines.loading.load_pipeline`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("audio", "faces", "denoise", "write")  # what the pipeline's progress hook reports, in order


# --------------------------------------------------------------------------- child processes


def child_env() -> dict[str, str]:
    """The environment of a child: this project importable from any folder."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), path) if p)}


TIMED_OUT = -999  # run_child's exit status for a child stopped at its deadline
_RUNNING: set[int] = set()  # process groups of this process's children (each runs in a session of its own)


def stop_group(pid: int, grace: float = 0.0) -> None:
    """Stop the process group ``pid`` leads: SIGTERM first when ``grace`` > 0 (a part then stops its own
    children), SIGKILL after ``grace`` seconds or at once."""
    try:
        if grace > 0:
            os.killpg(pid, signal.SIGTERM)
            end = time.monotonic() + grace
            while time.monotonic() < end:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    break
                time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass


def stop_children_on_sigterm() -> None:
    """In a part's process: on SIGTERM, kill the children it started (in their own sessions), then exit."""
    def handler(signum, frame):
        for pid in list(_RUNNING):
            stop_group(pid)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
DEADLINE_MARGIN = 8.0  # seconds a part keeps for itself after its last child, to report


def seconds_left(ctx: SimpleNamespace) -> float:
    """Seconds until the part's deadline (set by tools/gpu_check.py), less the margin it keeps to report."""
    return ctx.deadline - time.time() - DEADLINE_MARGIN


def run_child(args: list[str], log: Path, cwd: Path = PROJECT_ROOT, env: dict[str, str] | None = None,
              timeout: float | None = None) -> tuple[int, float, str]:
    """Run ``python args...``; (exit status, wall seconds, its stderr), stderr also kept in ``log``.

    The project root is the working folder by default: the training configs name files relative to it.
    A child still running after ``timeout`` seconds is killed with what it started; the status is then
    :data:`TIMED_OUT`.
    """
    start = time.perf_counter()
    with open(log, "w") as err:
        child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=err,
                                 env={**child_env(), **(env or {})}, cwd=cwd, start_new_session=True)
        _RUNNING.add(child.pid)
        try:
            code = child.wait(timeout=None if timeout is None else max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            stop_group(child.pid)
            child.wait()
            code = TIMED_OUT
        except BaseException:  # interrupted: the child has its own session, stop it with us
            stop_group(child.pid)
            raise
        finally:
            _RUNNING.discard(child.pid)
    seconds = time.perf_counter() - start
    return code, seconds, log.read_text(errors="replace")


def run_step(ctx: SimpleNamespace, emit: Callable[..., None], name: str, args: list[str], log: Path, cwd: Path = PROJECT_ROOT,
             env: dict[str, str] | None = None) -> tuple[bool, float, str]:
    """One child of a part, within the part's time: (succeeded, seconds, stderr); a failure, the time limit
    or no time left is emitted as the row ``name``."""
    left = seconds_left(ctx)
    if left < 5:
        emit(name, "the part's time limit was reached", status="skipped")
        return False, 0.0, ""
    code, wall, stderr = run_child(args, log, cwd, env, timeout=left)
    if code != 0:
        emit(name, failure(code, wall, stderr), status="timeout" if code == TIMED_OUT else "failed")
    return code == 0, wall, stderr


def failure(code: int, seconds: float, stderr: str) -> str:
    """What a failed child run reports: its time limit, or its exit status and error line."""
    if code == TIMED_OUT:
        return f"stopped at the part's time limit after {seconds:.0f} s (last output: {error_line(stderr)})"
    return f"exit status {code}: {error_line(stderr)}"


def error_line(stderr: str) -> str:
    """The line of a child's stderr that says what went wrong: its ``error:`` line, a logged ERROR or the
    exception, else the last line (progress bars, which redraw with carriage returns, left out)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    patterns = (r"^error:", r"\bERROR\b", r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b")
    for pattern in patterns:
        for line in reversed(lines):
            if re.search(pattern, line):
                return line
    return lines[-1] if lines else "(no output)"


class ProgressClock:
    """A progress hook that notes when each stage starts (done == 0) and ends (done == total)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.spans: dict[str, list[float]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.start
        span = self.spans.setdefault(stage, [now, now])
        span[1] = now

    def seconds(self) -> dict[str, float]:
        return {stage: end - begin for stage, (begin, end) in self.spans.items()}

    def first(self) -> float:
        return min((begin for begin, _ in self.spans.values()), default=0.0)


def cli_timer(result_path: str, cli_args: list[str]) -> int:
    """Run ``python -m scripts.inference cli_args`` in this process, noting stage times and the peak GPU memory.

    Only :class:`latentsync.pipelines.progress.TqdmProgress` (the CLI's progress hook) is wrapped; when
    it is gone the times of the whole command are still measured.
    """
    import runpy

    clock = ProgressClock()
    hooked = False
    try:
        from latentsync.pipelines.progress import TqdmProgress

        drawn = TqdmProgress.__call__

        def timed(self, stage, done, total):
            clock(stage, done, total)
            return drawn(self, stage, done, total)

        TqdmProgress.__call__ = timed
        hooked = True
    except (ImportError, AttributeError):
        pass
    sys.argv = ["scripts.inference", *cli_args]
    code: int | str | None = 0
    try:
        runpy.run_module("scripts.inference", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    result = {"exit": code if isinstance(code, int) else (0 if code is None else 1), "hooked": hooked,
              "stages": clock.seconds(), "startup": clock.first(), "seconds": time.perf_counter() - clock.start}
    import torch

    if torch.cuda.is_initialized():
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    Path(result_path).write_text(json.dumps(result))
    return result["exit"]


def video_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as (N, H, W, 3) uint8 RGB (PyAV)."""
    import av

    with av.open(os.fspath(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def frame_count(path: str | os.PathLike) -> int:
    import av

    with av.open(os.fspath(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def max_frame_difference(a: str | os.PathLike, b: str | os.PathLike) -> int:
    """Largest pixel difference (0-255) between two videos' decoded frames; 0 for byte-identical files."""
    if hashlib.sha256(Path(a).read_bytes()).digest() == hashlib.sha256(Path(b).read_bytes()).digest():
        return 0
    first, second = video_frames(a), video_frames(b)
    if first.shape != second.shape:
        return 255
    return int(np.abs(first.astype(np.int16) - second.astype(np.int16)).max())


OWNER_MARK = ".made-by-latentsync-gpu-check"


def fresh_folder(ctx: SimpleNamespace, name: str) -> Path:
    """The part's own folder in the work folder, emptied of an earlier run's outputs; a folder of that name
    that this tool did not make (no mark file) is left alone and is an error."""
    import shutil

    folder = Path(ctx.workdir) / name
    if folder.exists():
        if not (folder / OWNER_MARK).is_file():
            raise RuntimeError(f"{folder} exists and was not made by tools/gpu_check.py: choose another --workdir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / OWNER_MARK).touch()
    return folder


# --------------------------------------------------------------------------- part 1: the CLI end to end


def model_flags(made: dict, config: str) -> list[str]:
    return ["--unet_config_path", config, "--inference_ckpt_path", made["unet_ckpt"],
            "--whisper_path", made["whisper"], "--vae_path", made["vae"]]


def inference_configs(ctx: SimpleNamespace) -> list[tuple[str, str]]:
    if ctx.tiny:
        return [("tiny UNet", ctx.made["unet_config"])]
    return [("stage2_512 (1.6)", str(PROJECT_ROOT / "configs/unet/stage2_512.yaml")),
            ("stage2 (1.5)", str(PROJECT_ROOT / "configs/unet/stage2.yaml"))]


def describe_cli_run(frames: int, wall: float, timing: dict, dtype: str) -> tuple[str, dict]:
    stages = timing.get("stages", {})
    parts = [f"{stage} {stages[stage]:.1f} s ({frames / max(stages[stage], 1e-9):.1f} frames/s)"
             for stage in STAGES if stage in stages]
    values = {"frames": frames, "seconds": wall, "frames_per_second": frames / wall,
              "startup_seconds": timing.get("startup"), "stages": stages,
              "peak_allocated_gib": timing.get("peak_allocated_gib"), "peak_reserved_gib": timing.get("peak_reserved_gib")}
    text = f"{frames / wall:.2f} frames/s whole command ({frames} frames in {wall:.1f} s, {dtype}"
    text += f", start-up and model loading {timing['startup']:.1f} s)" if timing.get("startup") else ")"
    if parts:
        text += "; stages (overlapping): " + ", ".join(parts)
    if timing.get("peak_allocated_gib") is not None:
        text += f"; peak GPU {timing['peak_allocated_gib']:.2f} GiB allocated, {timing['peak_reserved_gib']:.2f} GiB reserved"
    return text, values


def inference_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    """Part 1: ``scripts.inference`` on the talking head, per config and deep-cache setting."""
    made, work = ctx.made, fresh_folder(ctx, "inference")
    steps = 2 if ctx.tiny else 20
    for label, config in inference_configs(ctx):
        for deepcache in (True, False):
            name = f"{label}, deep cache {'on' if deepcache else 'off'}"
            stem = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
            out, timing_path = work / f"{stem}.mp4", work / f"{stem}.json"
            args = ["-m", "tools.gpu_check_inference", "--cli-timer", str(timing_path), "--",
                    *model_flags(made, config), "--video_path", made["video"], "--audio_path", made["speech"],
                    "--video_out_path", str(out), "--inference_steps", str(steps), "--scheduler", "ddim",
                    "--device", ctx.device, "--face_detector", "mediapipe", "--seed", str(ctx.seed),
                    "--enable_deepcache" if deepcache else "--no-enable_deepcache", "--temp_dir", str(work / "tmp")]
            ok, wall, stderr = run_step(ctx, emit, name, args, work / f"{stem}.log")
            if not ok:
                continue
            timing = json.loads(timing_path.read_text())
            found = re.search(r"dtype (torch\.\w+)", stderr)
            dtype = f"DDIM {steps} steps, {found.group(1).removeprefix('torch.') if found else 'dtype not logged'}"
            text, values = describe_cli_run(frame_count(out), wall, timing, dtype)
            emit(name, text, **values)


# --------------------------------------------------------------------------- part 5: determinism


DETERMINISTIC_SETTINGS = ("cudnn.deterministic, cudnn.benchmark off, torch.use_deterministic_algorithms, "
                          "CUBLAS_WORKSPACE_CONFIG=:4096:8")


def determinism_child(job_path: str) -> None:
    """Load the pipeline once and sync the same input ``runs`` times with the same seed (a child process)."""
    job = json.loads(Path(job_path).read_text())
    import torch

    if job["deterministic"]:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    from latentsync.pipelines.loading import load_pipeline
    from latentsync.pipelines.video_runner import sync_video
    from latentsync.settings import InferenceSettings

    pipe = load_pipeline(job["config"], job["ckpt"], whisper_path=job["whisper"], vae_path=job["vae"],
                         device=job["device"], face_detector="mediapipe")
    settings = InferenceSettings.from_config(video_path=job["video"], audio_path=job["audio"],
                                             inference_steps=job["steps"], seed=job["seed"], enable_deepcache=False)
    for out in job["outputs"]:
        sync_video(pipe, settings.replace(video_out_path=out), progress=lambda *_: None)


def determinism_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    """Part 5: the same seed twice in one process, and once more in another: identical frames?"""
    made, work = ctx.made, fresh_folder(ctx, "determinism")
    label, config = inference_configs(ctx)[-1]
    base = {"config": config, "ckpt": made["unet_ckpt"], "whisper": made["whisper"], "vae": made["vae"],
            "video": made["video"], "audio": made["short_speech"], "device": ctx.device, "seed": ctx.seed,
            "steps": 2 if ctx.tiny else 20}

    def runs(tag: str, count: int, deterministic: bool) -> list[Path] | None:
        outputs = [work / f"{tag}_{k}.mp4" for k in range(count)]
        job = work / f"{tag}.json"
        job.write_text(json.dumps({**base, "outputs": [str(o) for o in outputs], "deterministic": deterministic}))
        env = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"} if deterministic else None  # read when cuBLAS starts
        ok, _, _ = run_step(ctx, emit, f"{label}, {tag}", ["-m", "tools.gpu_check_inference", "--determinism", str(job)],
                            work / f"{tag}.log", env=env)
        return outputs if ok else None

    first = runs("process_a", 2, False)
    second = runs("process_b", 1, False) if first else None
    if not first or not second:
        return
    within, across = max_frame_difference(first[0], first[1]), max_frame_difference(first[0], second[0])
    frames = frame_count(first[0])
    summary = f"{label}, {frames} frames, seed {ctx.seed}: max pixel difference {within}/255 within a process, " \
              f"{across}/255 across processes (default settings)"
    emit("same seed twice", summary, frames=frames, within=within, across=across)
    if within or across:
        exact = runs("deterministic", 2, True)
        if exact:
            again = max_frame_difference(exact[0], exact[1])
            emit("with deterministic settings", f"max pixel difference {again}/255 with {DETERMINISTIC_SETTINGS}",
                 within=again)


# --------------------------------------------------------------------------- part 2: our side of the upstream check


class RecordingDetector:
    """Passes detection through to ``detector`` and keeps every frame it saw and the faces it found."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.frames: list[np.ndarray] = []
        self.faces: list[list] = []

    def detect(self, frame: np.ndarray):
        return self.detect_batch([frame], consecutive=False)[0]

    def detect_batch(self, frames, consecutive: bool = True):
        frames = list(frames)
        found = self.detector.detect_batch(frames, consecutive)
        self.frames.extend(np.array(f, copy=True) for f in frames)
        self.faces.extend(found)
        return found


def capture_written_frames() -> list[np.ndarray]:
    """Keep a copy of every frame the pipeline's video writer encodes (the writer class found by name)."""
    kept: list[np.ndarray] = []
    classes = {id(cls): cls for name, module in list(sys.modules.items()) if name.startswith("latentsync.")
               for cls in [getattr(module, "VideoWriter", None)] if isinstance(cls, type) and hasattr(cls, "write")}
    if not classes:
        raise RuntimeError("no VideoWriter class found in the latentsync modules: cannot capture the output frames")
    for cls in classes.values():
        original = cls.write

        def write(self, frame, _original=original):
            kept.append(np.array(frame, copy=True))
            return _original(self, frame)

        cls.write = write
    return kept


def ours_child(job_path: str) -> None:
    """Our pipeline on the upstream check's settings: every frame detected at full size, upstream's audio
    windows and last clip, deep cache off; saves its input frames, faces and output frames."""
    job = json.loads(Path(job_path).read_text())
    import torch

    from latentsync.pipelines.loading import load_pipeline
    from latentsync.pipelines.video_runner import sync_video
    from latentsync.settings import InferenceSettings

    start = time.perf_counter()
    pipe = load_pipeline(job["config"], job["ckpt"], whisper_path=job["whisper"], vae_path=job["vae"],
                         device=job["device"], dtype=getattr(torch, job["dtype"]), face_detector="mediapipe")
    settings = InferenceSettings.from_config(
        video_path=job["video"], audio_path=job["audio"], video_out_path=job["out"], inference_steps=job["steps"],
        guidance_scale=job["guidance"], seed=job["seed"], enable_deepcache=False, audio_windows="upstream",
        detect_every=1, detect_max_side=0,
    )
    recorder = RecordingDetector(pipe.face_detector)
    written = capture_written_frames()
    loaded = time.perf_counter() - start
    clock = ProgressClock()
    sync_video(pipe, settings, face_detector=recorder, pad_last_clip=False, progress=clock)
    seconds = time.perf_counter() - clock.start
    faces = [f[0] if f else None for f in recorder.faces]
    missing = [i for i, f in enumerate(faces) if f is None]
    if missing:
        raise RuntimeError(f"our detector found no face in frames {missing[:5]}: upstream cannot be fed its landmarks")
    work = Path(job["work"])
    np.save(work / "input_frames.npy", np.stack(recorder.frames))
    np.save(work / "landmarks.npy", np.stack([np.asarray(f.landmarks, np.float64) for f in faces]))
    np.save(work / "boxes.npy", np.array([f.box for f in faces], np.float64))
    np.save(work / "ours_frames.npy", np.stack(written))
    (work / "ours.json").write_text(json.dumps({"load_seconds": loaded, "seconds": seconds, "stages": clock.seconds(),
                                                "frames": len(written)}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cli-timer"] and argv[2:3] == ["--"]:
        return cli_timer(argv[1], argv[3:])
    if argv[:1] == ["--determinism"]:
        determinism_child(argv[1])
        return 0
    if argv[:1] == ["--ours"]:
        ours_child(argv[1])
        return 0
    print("error: usage: python -m tools.gpu_check_inference --cli-timer RESULT.json -- CLI-ARGS | --determinism JOB"
          " | --ours JOB (children of tools/gpu_check.py)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

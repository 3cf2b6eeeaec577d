"""One prepared check of the project at the scale users run it, on one CUDA GPU with no network.

Parts, in the order they run (``--parts`` picks some):

  inference    ``scripts.inference`` on a 1080x1920 25 fps 10 s talking head, stage2_512 (1.6) and stage2
               (1.5) with real-size random weights, fp16, DDIM 20 steps, deep cache on and off: frames/s of
               the whole command and of each stage, peak GPU memory
  stream       real-time streaming (``tools/benchmark_stream.py``): samplers' face-box PSNR against DDIM-20,
               stage2 (1.5) at DDIM 20 and at the fewest matching steps, stage2_512 (1.6) at a few settings
               (sampler, clip length, CUDA graphs): sustained frames/s, first-frame latency, late frames; the
               UNet's share of the matmul peak while streaming
  training     seconds per step and peak memory of stage1, stage2, stage2_512 and stage2_efficient, with and
               without gradient checkpointing and 8-bit Adam; two optimiser steps each; which cards they fit
  upstream     upstream LatentSync's pipeline (imported from its checkout) on the same GPU, weights and face
               landmarks as ours, 4 s of the talking head: time per stage and end to end, the largest pixel
               difference
  train_cli    ``scripts.train_unet``: two steps, a checkpoint, the run resumed for a third step
  determinism  the same seed twice, in one process and in two: identical frames, or the largest difference
               and whether deterministic settings make it exact
  eval         sync confidence, FVD/FID and hyperIQA throughput through their CLIs
  unet         one UNet forward per set-up (``tools/benchmark_unet.py``) as a share of the matmul peak

Each part runs in a child process with its own timeout inside a total budget (``--budget``); a part
that fails, times out or lacks a package is reported with its error line and the others still run.
Results are printed as they come and appended, as one dated section with the GPU, driver, torch and
CUDA versions, to ``benchmarks/RESULTS.md`` (``--results``). Inputs (random weights in the official
file formats, media) are made first, in ``--workdir`` (default: a temporary folder, removed at the end).
``--device cpu --tiny`` runs every part on the CPU with the test models and a few frames and steps:
the dry run of the test suite. ``LATENTSYNC_GPU_CHECK_FAULT=part:raise,part:hang`` makes parts fail
or hang on purpose (to see the reporting).

  bash tools/gpu_check.sh                                 # CUDA, real sizes, 8-minute budget
  bash tools/gpu_check.sh --device cpu --tiny             # the CPU dry run
  bash tools/gpu_check.sh --parts unet training --budget 300 --out /tmp/gpu_check

``tools/gpu_check.sh`` says how to run it on the lent GPU machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from tools.gpu_check_inference import error_line, stop_group

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# In the order they run: what the budget cuts first comes last.
PARTS = ("inference", "stream", "training", "upstream", "train_cli", "determinism", "eval", "unet")
PART_FUNCTIONS = {
    "inference": ("tools.gpu_check_inference", "inference_part"),
    "stream": ("tools.gpu_check_stream", "stream_part"),
    "upstream": ("tools.gpu_check_upstream", "upstream_part"),
    "unet": ("tools.gpu_check", "unet_part"),
    "training": ("tools.gpu_check_training", "training_part"),
    "train_cli": ("tools.gpu_check_training", "train_cli_part"),
    "determinism": ("tools.gpu_check_inference", "determinism_part"),
    "eval": ("tools.gpu_check_eval", "eval_part"),
}
# What each part needs made first (tools/gpu_check_prepare.py) and installed.
NEEDS = {
    "inference": {"models", "clip"}, "stream": {"models", "clip"}, "upstream": {"models", "clip"}, "unet": {"models"},
    "training": {"models", "training"}, "train_cli": {"models", "training", "dataset"},
    "determinism": {"models", "clip"}, "eval": {"clip", "eval"},
}
MEDIA = ("av", "mediapipe", "ffmpeg")
REQUIRES = {
    "prepare": ("diffusers", "whisper", "omegaconf"),
    "inference": ("diffusers", "whisper", "omegaconf", *MEDIA),
    "stream": ("diffusers", "whisper", "omegaconf", "soxr", *MEDIA),
    "upstream": ("diffusers", "whisper", "omegaconf", *MEDIA),
    "unet": ("diffusers", "omegaconf"),
    "training": ("diffusers", "omegaconf", "lpips", "librosa"),
    "train_cli": ("diffusers", "whisper", "omegaconf", "lpips", "librosa", "accelerate", "av", "ffmpeg"),
    "determinism": ("diffusers", "whisper", "omegaconf", *MEDIA),
    "eval": ("omegaconf", "python_speech_features", "torch_fidelity", *MEDIA),
}
PREPARE_MEDIA = ("av", "ffmpeg")  # what making the talking head and the clips needs besides REQUIRES["prepare"]
TIMEOUTS = {  # seconds per part on a GPU at real sizes (estimates); with --tiny, TINY_TIMEOUT each
    "prepare": 150, "inference": 240, "stream": 300, "training": 180, "upstream": 120, "train_cli": 150, "determinism": 75,
    "eval": 75, "unet": 150,
}
TINY_TIMEOUT = 300
BUDGETS = {False: 480, True: 1500}  # seconds in all: real sizes on a GPU, --tiny (generous: slow CI machines)
MIN_PART_SECONDS = 10  # a part gets no start with less of the budget left
STOP_GRACE = 5.0  # seconds a part gets to stop its own children when its time is up
ROW_PREFIX = "@@gpu_check_row "
FAULT_ENV = "LATENTSYNC_GPU_CHECK_FAULT"
DEFAULT_UPSTREAMS = (PROJECT_ROOT.parent / "shared" / "upstream" / "LatentSync", PROJECT_ROOT / ".gpucheck" / "upstream")


@dataclass
class Row:
    part: str
    name: str
    text: str
    status: str = "ok"  # ok, failed, skipped, timeout
    values: dict = field(default_factory=dict)

    def line(self) -> str:
        flag = "" if self.status == "ok" else f"{self.status.upper()}: "
        return f"[{self.part}] {self.name}: {flag}{self.text}"


# --------------------------------------------------------------------------- in the child process


def missing(names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (import names, or "ffmpeg" for the binary) this environment lacks."""
    absent = []
    for name in names:
        if name == "ffmpeg":
            if shutil.which("ffmpeg") is None and importlib.util.find_spec("imageio_ffmpeg") is None:
                absent.append("an ffmpeg binary (or imageio-ffmpeg)")
        elif importlib.util.find_spec(name) is None:
            absent.append(name)
    return absent


def emit_row(part: str, name: str, text: str, status: str = "ok", **values) -> None:
    row = Row(part, name, text, status, json.loads(json.dumps(values, default=str)))
    print(ROW_PREFIX + json.dumps(asdict(row)), flush=True)


def forced_fault(part: str) -> str | None:
    """The fault ``LATENTSYNC_GPU_CHECK_FAULT`` asks of ``part`` ("raise" or "hang"), if any."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, kind = item.strip().partition(":")
        if name == part and kind in ("raise", "hang"):
            return kind
    return None


def child_main(part: str, context_path: str) -> int:
    from tools.gpu_check_inference import stop_children_on_sigterm

    stop_children_on_sigterm()
    context = json.loads(Path(context_path).read_text())
    ctx = SimpleNamespace(**context)

    def emit(name: str, text: str, status: str = "ok", **values) -> None:
        emit_row(part, name, text, status, **values)

    needed = REQUIRES[part] + (PREPARE_MEDIA if part == "prepare" and set(ctx.needs) & {"clip", "dataset"} else ())
    absent = missing(needed)
    if absent:
        emit(part, f"needs {', '.join(absent)} (not installed)", status="skipped")
        return 0
    fault = forced_fault(part)
    try:
        if fault == "hang":
            time.sleep(24 * 3600)
        if fault == "raise":
            raise RuntimeError(f"forced failure of part {part} ({FAULT_ENV})")
        if part == "prepare":
            prepare_step(ctx, emit)
        else:
            module, function = PART_FUNCTIONS[part]
            getattr(importlib.import_module(module), function)(ctx, emit)
    except Exception as err:  # noqa: BLE001 - every failure becomes a row; the parent runs the next part
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        emit(part, f"{type(err).__name__}: {message}", status="failed")
        raise
    return 0


def prepare_step(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    import torch

    from tools.gpu_check_prepare import prepare

    start = time.perf_counter()
    made = prepare(ctx.workdir, set(ctx.needs), ctx.tiny, torch.device(ctx.device), ctx.speech)
    Path(ctx.workdir, "made.json").write_text(json.dumps(made))
    sizes = sum(_size(Path(p)) for p in made.values())
    emit("inputs", f"{len(made)} items ({', '.join(sorted(made))}), {sizes / 2**30:.2f} GiB, "
         f"ready in {time.perf_counter() - start:.0f} s", items=sorted(made), bytes=sizes)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def unet_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    """Part 3: tools/benchmark_unet.py's forward benchmark, one row per set-up."""
    from tools.gpu_check_inference import TIMED_OUT, failure, fresh_folder, run_child, seconds_left

    work = fresh_folder(ctx, "unet")
    if ctx.tiny:
        config, frames = ctx.made["unet_config"], 2
        setups = ["fp32", "fp32+math", "fp32+cl", "fp32+dc3", "fp32+graph", "bf16"]
    else:
        config, frames = str(PROJECT_ROOT / "configs/unet/stage2_512.yaml"), 16
        setups = ["fp16", "fp16+math", "fp16+flash", "fp16+efficient", "fp16+cudnn", "fp16+cl", "fp16+dc3",
                  "fp16+graph", "bf16", "fp16+compile"]  # compiling takes longest: last
    result = work / "rows.json"
    args = ["-m", "tools.benchmark_unet", "--config", config, "--weights", ctx.made["unet_ckpt"], "--device",
            ctx.device, "--frames", str(frames), "--repeats", "3", "--warmup", "0" if ctx.tiny else "2",
            "--json", str(result), "--setups", *setups]
    code, wall, stderr = run_child(args, work / "benchmark_unet.log", timeout=seconds_left(ctx))
    if result.is_file():  # written after each set-up: what finished is reported even after a failure
        report_rows(json.loads(result.read_text()), wall, emit)
    if code != 0:
        emit("benchmark_unet", failure(code, wall, stderr), status="timeout" if code == TIMED_OUT else "failed")


def report_rows(report: dict, wall: float, emit) -> None:
    emit("forward", f"{Path(report['config']).name}, {report['resolution']} px, CFG batch 2 x {report['frames']} frames:"
         f" {report['flops'] / 1e12:.4g} TFLOP per forward ({wall:.0f} s in all)", flops=report["flops"])
    for row in report["rows"]:
        if "error" in row:
            emit(row["setup"], f"cannot run here: {row['error']}", status="skipped")
        else:
            emit(row["setup"], f"{row['ms']:.1f} ms/step, {row['tflops']:.3g} TFLOP/s = {row['percent_of_peak']:.1f}% "
                 f"of the {row['peak_tflops']:.3g} TFLOP/s matmul peak, x{row['speedup']:.2f} vs {row['baseline']}, "
                 f"max|diff| {row['max_diff']:.3g}", **row)


# --------------------------------------------------------------------------- in the parent process


def run_part(part: str, context: dict, timeout: float, logs: Path, on_row: Callable[[Row], None]) -> list[Row]:
    """Run one part in a child process (its own process group), stream its rows; stop it at ``timeout``."""
    context_path = logs / f"{part}.context.json"
    context_path.write_text(json.dumps({**context, "deadline": time.time() + timeout}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
    err_path = logs / f"{part}.log"
    rows: list[Row] = []
    with open(err_path, "w") as err:
        child = subprocess.Popen([sys.executable, "-m", "tools.gpu_check", "--child", part, str(context_path)],
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=PROJECT_ROOT,
                                 start_new_session=True)

        def read() -> None:
            for line in child.stdout:
                if line.startswith(ROW_PREFIX):
                    row = Row(**json.loads(line[len(ROW_PREFIX):]))
                    rows.append(row)
                    on_row(row)
                else:
                    err.write(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            child.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(child.pid, grace=STOP_GRACE)  # the part stops the children it started, then dies
            child.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the part runs in its own session, so stop it too
            stop_group(child.pid, grace=STOP_GRACE)
            raise
        reader.join(timeout=10)
    stderr = err_path.read_text(errors="replace")
    if timed_out:
        extra = Row(part, part, f"timeout after {timeout:.0f} s (last output: {error_line(stderr)})", "timeout")
    elif child.returncode != 0 and not any(r.status == "failed" for r in rows):
        extra = Row(part, part, f"exit status {child.returncode}: {error_line(stderr)}", "failed")
    elif child.returncode != 0:  # the child reported its failure; keep the traceback's last line too
        extra = None
        for row in rows:
            if row.status == "failed" and row.name == part:
                row.values.setdefault("error_line", error_line(stderr))
    else:
        extra = None
    if extra:
        rows.append(extra)
        on_row(extra)
    return rows


def environment(device: str) -> dict:
    """GPU name, driver, torch and CUDA versions (without starting CUDA in this process), or the CPU."""
    import torch

    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    if device == "cuda":
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        try:
            line = subprocess.run(query, capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()[0]
            info["gpu"], info["driver"], info["memory"] = (v.strip() for v in line.split(","))
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            info["gpu"], info["driver"] = torch.cuda.get_device_name(0), "unknown (no nvidia-smi)"
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
        info["cpu"] = f"{model}, {os.cpu_count()} logical cores"
    return info


def section(info: dict, rows: list[Row], args: argparse.Namespace, used: float, parts: list[str],
            durations: dict[str, float]) -> str:
    """The Markdown section for RESULTS.md: a heading with the date and versions, one table per part."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if info["device"] == "cuda":
        where = (f"{info['gpu']} ({info.get('memory', '?')}), driver {info['driver']}, torch {info['torch']}, "
                 f"CUDA {info['cuda']}, cuDNN {info.get('cudnn')}")
    else:
        where = f"CPU ({info['cpu']}), torch {info['torch']}"
    title = "GPU check" if not args.tiny else "GPU check dry run (tiny models)"
    lines = [f"## {title}, {when}: {where}", "",
             f"`python -m tools.gpu_check --device {args.device}{' --tiny' if args.tiny else ''} --parts {' '.join(parts)}`"
             f" (Python {info['python']}); budget {args.budget:.0f} s, {used:.0f} s used.", ""]
    for part in ["prepare", *parts]:
        mine = [r for r in rows if r.part == part]
        if not mine:
            continue
        took = f" ({durations[part]:.0f} s)" if part in durations else ""
        lines += [f"### {part}{took}", "", "| check | result |", "| --- | --- |"]
        for row in mine:
            flag = "" if row.status == "ok" else f"**{row.status}**: "
            lines.append(f"| {row.name} | {flag}{row.text.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


def append_section(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` atomically (the file is rewritten under a temporary name, then renamed)."""
    from latentsync.utils.files import atomic_output

    old = path.read_text() if path.exists() else ""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n" if old else text.rstrip("\n") + "\n")


def default_upstream() -> str | None:
    return next((str(p) for p in DEFAULT_UPSTREAMS if (p / "latentsync").is_dir()), None)


def parse_timeouts(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in (*PARTS, "prepare") or not re.fullmatch(r"\d+(\.\d+)?", value):
            raise argparse.ArgumentTypeError(
                f"--timeout {item!r}: expected PART=SECONDS with PART one of prepare, {', '.join(PARTS)}")
        out[name] = float(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny configs, a few frames and steps (the CPU dry run)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--budget", type=float, help="seconds in all (default: 480 on a GPU, 1500 with --tiny)")
    parser.add_argument("--timeout", action="append", default=[], metavar="PART=SECONDS", help="one part's limit")
    parser.add_argument("--results", default=str(PROJECT_ROOT / "benchmarks" / "RESULTS.md"),
                        help="Markdown file the dated section is appended to")
    parser.add_argument("--out", help="folder for a copy of the section, the rows as JSON and the logs (the device's $OUT)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--workdir", help="folder for the inputs and outputs (kept; reused by the next run)")
    parser.add_argument("--upstream", default=default_upstream(), help="upstream LatentSync checkout (part upstream)")
    parser.add_argument("--speech", help="speech to use instead of espeak-ng (the GPU machine has none)")
    parser.add_argument("--seed", type=int, default=1247)
    parser.add_argument("--child", nargs=2, metavar=("PART", "CONTEXT"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        return child_main(*args.child)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # unwinds: parts get stopped
    try:
        timeouts = {**TIMEOUTS, **parse_timeouts(args.timeout)}
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.tiny:
        timeouts = {k: parse_timeouts(args.timeout).get(k, TINY_TIMEOUT) for k in timeouts}
    args.budget = args.budget if args.budget is not None else BUDGETS[args.tiny]
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here (the CPU dry run is --device cpu --tiny)")
    parts = [p for p in PARTS if p in args.parts]
    started = time.monotonic()
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="latentsync-gpucheck-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    info = environment(args.device)
    print(f"gpu_check: {info.get('gpu') or info.get('cpu')}, torch {info['torch']}, CUDA {info['cuda']}; "
          f"parts {' '.join(parts)}; budget {args.budget:.0f} s; work folder {workdir}", flush=True)
    rows: list[Row] = []

    def show(row: Row) -> None:
        print(row.line(), flush=True)

    absolute = lambda path: str(Path(path).resolve()) if path else None  # noqa: E731 - children run elsewhere
    context = {"device": args.device, "tiny": args.tiny, "workdir": str(workdir), "seed": args.seed,
               "upstream": absolute(args.upstream), "speech": absolute(args.speech), "made": {},
               "needs": sorted(set().union(*(NEEDS[p] for p in parts)))}
    prepared, durations = False, {}
    for part in ["prepare", *parts]:
        left = args.budget - (time.monotonic() - started)
        part_start = time.monotonic()
        if left < MIN_PART_SECONDS:
            row = Row(part, part, f"the total budget ({args.budget:.0f} s) is spent", "skipped")
        elif part != "prepare" and not prepared:
            row = Row(part, part, "the inputs could not be prepared (see the prepare row)", "skipped")
        else:
            found = run_part(part, context, min(timeouts[part], left), logs, show)
            durations[part] = time.monotonic() - part_start
            print(f"[{part}] {durations[part]:.0f} s", flush=True)
            rows += found
            if part == "prepare":
                made = workdir / "made.json"
                prepared = made.is_file() and not any(r.status != "ok" for r in found)
                context["made"] = json.loads(made.read_text()) if prepared else {}
            continue
        rows.append(row)
        show(row)
    used = time.monotonic() - started
    text = section(info, rows, args, used, parts, durations)
    append_section(Path(args.results), text)
    print(f"gpu_check: {sum(r.status == 'ok' for r in rows)} rows ok, {sum(r.status != 'ok' for r in rows)} not; "
          f"section appended to {args.results}", flush=True)
    report = {"environment": info, "rows": [asdict(r) for r in rows], "seconds": used, "part_seconds": durations}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check_section.md").write_text(text + "\n")
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
        with tarfile.open(out / "gpu_check_logs.tar.gz", "w:gz") as tar:
            for log in sorted(workdir.rglob("*.log")):
                tar.add(log, arcname=str(log.relative_to(workdir)))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)  # only the temporary folder this run made
    return 0 if all(r.status in ("ok", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

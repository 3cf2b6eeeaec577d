"""Speed per stage and peak memory of inference, against each stage's floor, with tiny random-weight models.

Makes a talking-head video + speech of each length (astronaut photo, espeak) at the given size,
runs the real pipeline on it in a fresh process per (length, frame path) so ``ru_maxrss`` is that
run's own peak, and times every stage through light wrappers around the pipeline's own calls
(decode, face detection, alignment, Whisper, VAE encode, UNet steps, VAE decode, restore/blend,
encode, mux). Each stage is compared with its floor measured in the same run: ffmpeg decoding
the input alone, ffmpeg + libx264 encoding it alone at the run's settings, one UNet forward per
step. ``--frame-path reference fast`` runs the plain per-frame path (whole-frame warps, detection
on every full frame, libx264 "medium") and the fast one on the same input, for before/after
ratios. With several lengths it also prints the ratio of the peaks (streaming keeps peak memory
flat in the video's length: target within 15%).

``--end-to-end`` measures what a user waits for instead: ``inference.sh`` from process start to
file written (start-up included: interpreter, imports, model loading, first detection), and, in a
second process of the same checkout, where that time goes (imports, loading, audio features,
first face detection, first frame handed to the encoder, last frame, file written). ``--code DIR
...`` names project checkouts to run (e.g. the commit before a change, from ``git worktree`` or
``git archive``), alternating run by run so a busy spell of a shared machine hits each alike;
``--importtime`` adds the heaviest imports of ``scripts.inference`` (``python -X importtime``).

  .venv/bin/python -m tools.benchmark_inference                                    # 10 s vs 120 s, 128x128
  .venv/bin/python -m tools.benchmark_inference --seconds 4 --size 1080x1920 --frame-path reference fast
  .venv/bin/python -m tools.benchmark_inference --end-to-end --seconds 10 --size 1080x1920 --threads 2 \
      --code /tmp/before . --repeat 3 --importtime
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

SAMPLE_RATE = 16000
STAGES = (
    "decode (detection pass)", "face detection", "Whisper", "decode (sync pass)", "alignment", "VAE encode",
    "UNet steps", "VAE decode", "restore/blend", "encode", "mux",
)
NETWORK_STAGES = ("VAE encode", "UNet steps", "VAE decode")
DTYPES = ("float32", "float16", "bfloat16")


def make_inputs(folder: str, seconds: float, size: tuple[int, int]) -> tuple[str, str]:
    """Speech looped to ``seconds`` and a matching talking-head video of ``size`` (width, height)."""
    from tools.synthetic_media import speak, write_talking_video, write_wav

    speech = speak("The quick brown fox jumps over the lazy dog, again and again.", os.path.join(folder, "s.wav"))
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(speech)))
    audio = np.tile(speech, repeats)[: int(seconds * SAMPLE_RATE)]
    audio_path = os.path.join(folder, f"audio_{seconds:g}s.wav")
    video_path = os.path.join(folder, f"video_{seconds:g}s_{size[0]}x{size[1]}.mp4")
    write_wav(audio_path, audio)
    write_talking_video(video_path, audio, size=size, with_audio=False)
    return video_path, audio_path


# --------------------------------------------------------------------------- timing hooks (child)


class StageClock:
    """Seconds spent per stage, accumulated by wrappers around the pipeline's calls; ``spans`` holds each
    stage's first start and last end (``time.perf_counter`` values)."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.spans: dict[str, tuple[float, float]] = {}
        self.synchronize = synchronize  # waits for the device, so its work is charged to the right stage

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.synchronize()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.synchronize()
                end = time.perf_counter()
                self.seconds[stage] += end - start
                self.spans[stage] = (self.spans.get(stage, (start, end))[0], end)

        return timed

    def wrap_iter(self, stage: str, items: Iterator) -> Iterator:
        """``items`` unchanged, the time spent producing each charged to ``stage``."""
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds[stage] += time.perf_counter() - start
            yield item


def install_clock(pipe, clock: StageClock) -> dict:
    """Wrap the pipeline's stage calls; returns a dict that receives the first UNet call's inputs."""
    from latentsync.face.alignment import FaceAligner
    from latentsync.media.reader import VideoReader
    from latentsync.media.writer import VideoWriter
    from latentsync.pipelines import video_runner

    passes = []
    frames = VideoReader.frames

    def timed_frames(self, *args, **kwargs):
        passes.append(None)  # the first pass over the video feeds detection, the second the sync
        stage = "decode (detection pass)" if len(passes) == 1 else "decode (sync pass)"
        return clock.wrap_iter(stage, frames(self, *args, **kwargs))

    VideoReader.frames = timed_frames
    FaceAligner._detect = clock.wrap("face detection", FaceAligner._detect)
    FaceAligner.align = clock.wrap("alignment", FaceAligner.align)
    FaceAligner.restore_clip = clock.wrap("restore/blend", FaceAligner.restore_clip)
    VideoWriter.write = clock.wrap("encode", VideoWriter.write)
    VideoWriter.__exit__ = clock.wrap("encode", VideoWriter.__exit__)  # flushes the encoder
    video_runner.mux_audio = clock.wrap("mux", video_runner.mux_audio)
    pipe.audio_encoder.audio2feat = clock.wrap("Whisper", pipe.audio_encoder.audio2feat)
    pipe.encode_latents = clock.wrap("VAE encode", pipe.encode_latents)
    pipe.denoise = clock.wrap("UNet steps", pipe.denoise)
    pipe.decode_latents = clock.wrap("VAE decode", pipe.decode_latents)

    first_call: dict = {}

    def keep_inputs(module, args, kwargs):
        if not first_call:
            first_call.update(args=args, kwargs=kwargs)

    pipe.unet.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    return first_call


def unet_forward_seconds(pipe, first_call: dict, clock: StageClock, repeats: int = 5) -> float:
    """Least seconds of one UNet forward on the run's own clip inputs (the network's floor per step)."""
    import torch

    times = []
    with torch.no_grad():
        for _ in range(repeats):
            clock.synchronize()
            start = time.perf_counter()
            pipe.unet(*first_call["args"], **first_call["kwargs"])
            clock.synchronize()
            times.append(time.perf_counter() - start)
    return min(times)


def child(args: argparse.Namespace) -> None:
    """One measured run; prints a JSON line with the stage times, the UNet floor and the peaks."""
    import torch

    from latentsync.face.alignment import REFERENCE_FACE_STAGE_OPTIONS
    from latentsync.media.writer import VideoEncoding
    from latentsync.pipelines import video_runner
    from latentsync.pipelines.loading import load_pipeline
    from latentsync.settings import InferenceSettings

    torch.set_num_threads(args.threads)
    models = json.loads(args.models)
    pipe = load_pipeline(
        models["unet_config"], models["unet_ckpt"], whisper_path=models["whisper"], vae_path=models["vae"],
        device=args.device, dtype=getattr(torch, args.dtype), face_detector="mediapipe",
    )
    pipe.set_progress_bar_config(disable=True)
    if args.frame_path == "reference":  # this process only: every full frame detected, whole-frame warps, medium CRF 18
        video_runner.face_stage_options = lambda settings, device: REFERENCE_FACE_STAGE_OPTIONS
        video_runner.video_encoding = lambda settings: VideoEncoding()
    on_cuda = pipe.unet.device.type == "cuda"
    clock = StageClock(torch.cuda.synchronize if on_cuda else lambda: None)
    first_call = install_clock(pipe, clock)
    with tempfile.TemporaryDirectory() as out_dir:
        # configs/inference.yaml's settings with the run's steps, seed 0 and no deep cache (as the rows of
        # benchmarks/RESULTS.md were measured).
        settings = InferenceSettings.from_config(
            video_path=args.video, audio_path=args.audio, video_out_path=os.path.join(out_dir, "out.mp4"),
            inference_steps=args.steps, seed=0, enable_deepcache=False,
        )
        encoding = video_runner.video_encoding(settings)
        start = time.perf_counter()
        report = video_runner.sync_video(pipe, settings)
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "frames": report.frames, "seconds": seconds, "stages": dict(clock.seconds),
        "peak_rss_mib": peak_kib / 1024, "clip_frames": pipe.num_frames,
        "unet_forward_s": unet_forward_seconds(pipe, first_call, clock),
        "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None,
        "encoding": [encoding.preset, encoding.crf],
    }
    print(json.dumps(result))


# --------------------------------------------------------------------------- floors (parent)


def _ffmpeg_seconds(args: list[str]) -> float:
    from latentsync.media.ffmpeg import ffmpeg_exe

    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def media_floors(video: str, frames: int, encoding: tuple[str, int]) -> dict[str, float]:
    """ms/frame of ffmpeg alone: decoding to RGB, and libx264 encoding at ``encoding`` (preset, crf) on top of decoding."""
    decode = _ffmpeg_seconds(["-i", video, "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", os.devnull])
    passthrough = _ffmpeg_seconds(["-i", video, "-f", "null", "-"])
    preset, crf = encoding
    encode = _ffmpeg_seconds(["-i", video, "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-f", "null", "-"])
    return {"decode": 1000 * decode / frames, "encode": 1000 * max(encode - passthrough, 0.0) / frames}


# --------------------------------------------------------------------------- report (parent)


def fastest(runs: list[dict]) -> dict:
    """Runs of one configuration merged: each time (stage, floor, total) its minimum, each peak its maximum.

    On a shared machine the minimum is the least disturbed measurement of each stage.
    """
    merged = dict(runs[0])
    merged["seconds"] = min(r["seconds"] for r in runs)
    merged["unet_forward_s"] = min(r["unet_forward_s"] for r in runs)
    merged["stages"] = {stage: min(r["stages"].get(stage, 0.0) for r in runs) for stage in runs[0]["stages"]}
    merged["floors"] = {name: min(r["floors"][name] for r in runs) for name in runs[0]["floors"]}
    merged["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    if runs[0]["peak_device_mib"] is not None:
        merged["peak_device_mib"] = max(r["peak_device_mib"] for r in runs)
    return merged


def stage_rows(result: dict, steps: int) -> list[tuple[str, float, float | None]]:
    """(stage, ms/frame, floor ms/frame or None) rows, then the totals."""
    frames = result["frames"]
    ms = {stage: 1000 * result["stages"].get(stage, 0.0) / frames for stage in STAGES}
    floors = result["floors"]
    unet_floor = 1000 * result["unet_forward_s"] * steps / result["clip_frames"]
    floor_of = {
        "decode (detection pass)": floors["decode"], "decode (sync pass)": floors["decode"],
        "UNet steps": unet_floor, "encode": floors["encode"],
    }
    total = 1000 * result["seconds"] / frames
    rows = [(stage, ms[stage], floor_of.get(stage)) for stage in STAGES]
    # Stages that run in threads beside each other (detection, alignment, restore/encode) overlap,
    # so their sum can exceed the wall time: then this row is negative.
    rows.append(("other (bookkeeping; < 0: overlap)", total - sum(ms.values()), None))
    rows.append(("all but UNet/VAE", total - sum(ms[s] for s in NETWORK_STAGES), None))
    rows.append(("end to end", total, None))
    return rows


def print_table(label: str, result: dict, steps: int) -> None:
    print(f"\n### {label}: {result['frames']} frames, libx264 {result['encoding'][0]} CRF {result['encoding'][1]}, "
          f"peak RSS {result['peak_rss_mib']:.0f} MiB"
          + (f", peak device {result['peak_device_mib']:.0f} MiB" if result["peak_device_mib"] is not None else ""))
    print("| stage | ms/frame | frames/s | floor ms/frame | x floor |")
    print("|---|---:|---:|---:|---:|")
    for stage, ms, floor in stage_rows(result, steps):
        fps = f"{1000 / ms:.1f}" if ms > 0 else "-"
        floor_text = f"{floor:.1f}" if floor is not None else ""
        ratio = f"{ms / floor:.2f}" if floor else ""
        print(f"| {stage} | {ms:.1f} | {fps} | {floor_text} | {ratio} |")


def print_comparison(before: dict, after: dict, steps: int) -> None:
    print("\n### reference -> fast (same input, same run)")
    print("| stage | reference ms/frame | fast ms/frame | speed-up |")
    print("|---|---:|---:|---:|")
    for (stage, a, _), (_, b, _) in zip(stage_rows(before, steps), stage_rows(after, steps)):
        speedup = f"{a / b:.2f}x" if b > 0 else ""
        print(f"| {stage} | {a:.1f} | {b:.1f} | {speedup} |")


# --------------------------------------------------------------------------- end to end, start-up included

# Runs in a fresh process of the checkout being measured (``python -c``), so it may only use what
# every checkout has: the CLI's main(), the progress hook, the reader/writer, the aligner and the
# loader. It imports nothing the CLI would import later (diffusers, the UNet), so the order of the
# CLI's own imports is kept. Times are seconds since the parent started the process
# (LATENTSYNC_BENCH_T0, wall clock).
_STARTUP_DRIVER = r"""
import json, os, sys, time
T0 = float(os.environ["LATENTSYNC_BENCH_T0"])
marks, spent = {}, {}
def mark(name):
    marks.setdefault(name, round(time.time() - T0, 4))
def timed(name, function):
    def wrapper(*args, **kwargs):
        start = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] = round(spent.get(name, 0.0) + time.time() - start, 4)
    return wrapper
mark("interpreter started")
import scripts.inference as cli
mark("imports done")
from latentsync.face.alignment import FaceAligner
from latentsync.media.writer import VideoWriter
from latentsync.pipelines.progress import TqdmProgress
from latentsync.whisper.audio2feature import Audio2Feature
progress = TqdmProgress.__call__
def on_progress(self, stage, done, total):
    if stage == "audio" and done == 0:
        mark("models loaded")
    if stage == "audio" and done == total:
        mark("audio features")
    if stage == "write" and done == total:
        mark("file written (muxed)")
    return progress(self, stage, done, total)
TqdmProgress.__call__ = on_progress
detect = FaceAligner._detect
def on_detect(self, *args, **kwargs):
    found = detect(self, *args, **kwargs)
    mark("first face detection")
    return found
FaceAligner._detect = on_detect
def first(name, function):
    def wrapper(*args, **kwargs):
        mark(name + " (start)")
        result = function(*args, **kwargs)
        mark(name)
        return result
    return wrapper
from latentsync.media.reader import VideoReader
frames = VideoReader.frames
def on_frames(self, *args, **kwargs):
    mark("decoding, pass 1" if "decoding, pass 1" not in marks else "decoding, pass 2")
    return frames(self, *args, **kwargs)
VideoReader.frames = on_frames
FaceAligner.align = first("first alignment", FaceAligner.align)
FaceAligner.restore_clip = first("first restore", FaceAligner.restore_clip)
write = VideoWriter.write
def on_write(self, frame):
    mark("first frame to the encoder")
    return write(self, frame)
VideoWriter.write = on_write
Audio2Feature.__init__ = timed("Whisper", Audio2Feature.__init__)
import latentsync.pipelines.loading as loading
loading.make_face_detector = timed("face detector", loading.make_face_detector)
loading.load_pipeline = timed("load_pipeline, imports included", loading.load_pipeline)
if hasattr(cli, "load_pipeline"):  # the CLI may hold its own reference
    cli.load_pipeline = loading.load_pipeline
code = cli.main(sys.argv[1:])
mark("main returned")
print(json.dumps({"code": code, "marks": marks, "loading": spent}))
"""

STARTUP_MARKS = (
    "interpreter started", "imports done", "models loaded", "audio features", "first face detection",
    "first frame to the encoder", "file written (muxed)", "main returned",
)
DETAIL_MARKS = (  # where the wait for the first frame goes
    "decoding, pass 1", "decoding, pass 2", "first alignment (start)", "first alignment",
    "first restore (start)", "first restore",
)


def _cli_flags(models: dict, video: str, audio: str, out: str, args: argparse.Namespace) -> list[str]:
    return ["--unet_config_path", models["unet_config"], "--inference_ckpt_path", models["unet_ckpt"],
            "--whisper_path", models["whisper"], "--vae_path", models["vae"], "--video_path", video,
            "--audio_path", audio, "--video_out_path", out, "--inference_steps", str(args.steps),
            "--device", args.device, "--face_detector", "mediapipe"]


def _checkout_env(checkout: Path, threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(checkout), "PYTHON": sys.executable}


def end_to_end_run(checkout: Path, models: dict, video: str, audio: str, args: argparse.Namespace) -> dict:
    """One ``inference.sh`` run (wall seconds, process start to exit with the file written) and one
    instrumented run of the same checkout (the start-up milestones)."""
    with tempfile.TemporaryDirectory(prefix="latentsync-e2e-") as out_dir:
        out = os.path.join(out_dir, "out.mp4")
        flags = _cli_flags(models, video, audio, out, args)
        env = _checkout_env(checkout, args.threads)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        done = subprocess.run(["bash", str(checkout / "inference.sh"), *flags], cwd=checkout, env=env,
                              capture_output=True, text=True, check=False)
        wall = time.time() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0 or not os.path.isfile(out):
            sys.exit(f"inference.sh of {checkout} failed:\n{done.stderr[-3000:]}")
        os.remove(out)
        env["LATENTSYNC_BENCH_T0"] = repr(time.time())
        traced = subprocess.run([sys.executable, "-c", _STARTUP_DRIVER, *flags], cwd=checkout, env=env,
                                capture_output=True, text=True, check=False)
        if traced.returncode != 0:
            sys.exit(f"instrumented run of {checkout} failed:\n{traced.stderr[-3000:]}")
        result = json.loads(traced.stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "load": os.getloadavg()[0], **result}


def import_breakdown(checkout: Path, threads: int, top: int = 12) -> list[tuple[str, float]]:
    """The heaviest imports of ``scripts.inference`` (``-X importtime``): (module, cumulative s), nested ones indented."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import scripts.inference"], cwd=checkout,
                          env=_checkout_env(checkout, threads), capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 2:
            rows.append((name.rstrip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:top]


def end_to_end(args: argparse.Namespace, models: dict, tmp: str) -> None:
    """``--end-to-end``: frames/s as a user sees them, start-up included, for each checkout, alternating."""
    checkouts = [Path(c).resolve() for c in (args.code or ["."])]
    for seconds in args.seconds:
        video, audio = make_inputs(tmp, seconds, args.size)
        frames = math.ceil(seconds * 25 - 1e-9)
        runs: dict[Path, list[dict]] = defaultdict(list)
        for round_ in range(args.repeat):
            for checkout in checkouts:
                result = end_to_end_run(checkout, models, video, audio, args)
                runs[checkout].append(result)
                print(f"round {round_ + 1}, {checkout}: {result['wall']:.2f} s, {frames / result['wall']:.2f} frames/s "
                      f"end to end, CPU {result['cpu']:.1f} s, load {result['load']:.2f}", flush=True)
        size = f"{args.size[0]}x{args.size[1]}"
        print(f"\n### {seconds:g} s {size} ({frames} frames), inference.sh, {args.steps} steps, {args.device}, "
              f"{args.threads} threads, best of {args.repeat}")
        print("| checkout | end to end s | frames/s | " + " | ".join(STARTUP_MARKS[1:]) + " | frame path frames/s |")
        print("|---|---:|---:|" + "---:|" * (len(STARTUP_MARKS) - 1) + "---:|")
        for checkout, found in runs.items():
            best = min(found, key=lambda r: r["wall"])
            marks = {name: min(r["marks"].get(name, math.nan) for r in found) for name in STARTUP_MARKS}
            path_seconds = marks["file written (muxed)"] - marks["first frame to the encoder"]
            print(f"| {checkout} | {best['wall']:.2f} | {frames / best['wall']:.2f} | "
                  + " | ".join(f"{marks[name]:.2f}" for name in STARTUP_MARKS[1:])
                  + f" | {frames / path_seconds:.1f} |")
        for checkout, found in runs.items():
            print(f"{checkout.name} details (first run): " + ", ".join(
                f"{name} {found[0]['marks'].get(name, math.nan):.2f}" for name in DETAIL_MARKS))
        if len(checkouts) > 1:
            first = runs[checkouts[0]]
            for checkout in checkouts[1:]:
                ratios = [a["wall"] / b["wall"] for a, b in zip(first, runs[checkout])]
                cpu = [b["cpu"] / a["cpu"] for a, b in zip(first, runs[checkout])]
                print(f"\n{checkout.name} vs {checkouts[0].name}, per round (back to back): speed x"
                      + ", x".join(f"{r:.2f}" for r in ratios) + f" (median x{statistics.median(ratios):.2f}); "
                      f"CPU time x{statistics.median(cpu):.2f} (median)")
        print("\nloading, seconds (best of the runs): " + "; ".join(
            f"{checkout.name}: " + ", ".join(f"{k} {min(r['loading'].get(k, math.nan) for r in found):.2f}"
                                              for k in found[0]["loading"])
            for checkout, found in runs.items()))
    if args.importtime:
        for checkout in checkouts:
            print(f"\nheaviest imports of scripts.inference in {checkout} (cumulative s, -X importtime):")
            for name, cumulative in import_breakdown(checkout, args.threads):
                print(f"  {cumulative:6.2f}  {name}")


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from err
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 120], help="input lengths (default: 10 120)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="video WIDTHxHEIGHT (default: 128x128)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="model dtype (default: %(default)s)")
    parser.add_argument("--frame-path", nargs="+", choices=("reference", "fast"), default=["fast"],
                        help="per-frame paths to run on each input (default: fast)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per configuration, alternating; each time is the best of them (default: 1)")
    parser.add_argument("--unet_config_path", help="real UNet config (with the three paths below); default: tiny models")
    parser.add_argument("--inference_ckpt_path")
    parser.add_argument("--vae_path")
    parser.add_argument("--whisper_path")
    parser.add_argument("--end-to-end", action="store_true",
                        help="time inference.sh from process start to file written, with a start-up breakdown")
    parser.add_argument("--code", nargs="+", metavar="DIR",
                        help="--end-to-end: project checkouts to compare, alternating (default: this one)")
    parser.add_argument("--importtime", action="store_true", help="--end-to-end: list the heaviest imports too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.frame_path = args.frame_path[0]
        child(args)
        return

    from tools.tiny_models import write_all

    peaks = []
    with tempfile.TemporaryDirectory(prefix="latentsync-bench-") as tmp:
        if args.unet_config_path:
            paths = {"unet_config": args.unet_config_path, "unet_ckpt": args.inference_ckpt_path,
                     "vae": args.vae_path, "whisper": args.whisper_path}
        else:
            paths = {k: str(v) for k, v in vars(write_all(Path(tmp) / "models")).items()}
        if args.end_to_end:
            end_to_end(args, paths, tmp)
            return
        for seconds in args.seconds:
            video, audio = make_inputs(tmp, seconds, args.size)
            runs = defaultdict(list)
            for _ in range(args.repeat):  # alternating, so a busy spell of the machine hits both paths
                for frame_path in args.frame_path:
                    cmd = [sys.executable, "-m", "tools.benchmark_inference", "--child", "--video", video,
                           "--audio", audio, "--models", json.dumps(paths), "--steps", str(args.steps),
                           "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
                           "--frame-path", frame_path]
                    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                    if done.returncode != 0:
                        sys.exit(f"benchmark run for {seconds:g} s ({frame_path}) failed:\n{done.stderr[-3000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["floors"] = media_floors(video, result["frames"], result["encoding"])
                    runs[frame_path].append(result)
            results = {frame_path: fastest(found) for frame_path, found in runs.items()}
            for frame_path, result in results.items():
                peaks.append(result["peak_rss_mib"])
                size = f"{args.size[0]}x{args.size[1]}"
                print_table(f"{seconds:g} s {size}, {frame_path} frame path, {args.steps} steps, {args.device} "
                            f"{args.dtype}, best of {args.repeat}", result, args.steps)
            if len(results) == 2:
                print_comparison(results["reference"], results["fast"], args.steps)
    if len(args.seconds) > 1:
        ratio = max(peaks) / min(peaks)
        print(f"\npeak RSS ratio (largest / smallest): {ratio:.3f} ({(ratio - 1) * 100:.1f}% apart; target < 15%)")


if __name__ == "__main__":
    main()

"""Real-time streaming, measured: first-frame latency, sustained frame rate and late frames (prints numbers).

``realtime`` (default): speech with pauses (espeak-ng sentences, each followed by 0.6-2 s of silence)
is pushed at real-time pace in 20-40 ms chunks, silences included, as a microphone delivers it, into
a session on the wall clock; the frames are read as they come due. Reported: the first-frame latency
(from pushing the chunk with the first speech to reading the first talking frame) and the same for
every later onset of speech, frames late (ready after they were due) or dropped, the output frame
rate, and the generator's capacity (frames per second of generate-step time). ``quality``: the same
speech as fast as possible (no clock) with several samplers; face-box PSNR of each run's frames
against the first run's (as ``benchmark_unet pipeline`` does offline), to find the fewest steps that
match DDIM-20. ``share``: the UNet's achieved TFLOP/s while streaming as fast as possible (deep cache
off: every forward is a full one), as a share of the device's measured matmul peak, and the UNet's
share of the generate step's time.

By default the models are the tests' tiny random-weight ones on the CPU and the avatar a 2 s
256x256 synthetic talking head; ``--unet_config/--unet_ckpt/--whisper/--vae`` take real-size files
(``tools/gpu_check.py`` does that on a GPU). The machine should be quiet: every number is wall time.

  OMP_NUM_THREADS=2 .venv/bin/python -m tools.benchmark_stream --seconds 60 --threads 2
  .venv/bin/python -m tools.benchmark_stream --seconds 10 --clip_frames 16 --inference_steps 10 --scheduler dpm++
  .venv/bin/python -m tools.benchmark_stream quality --seconds 6 --runs ddim:20 ddim:10 dpm++:10 dpm++:6
  .venv/bin/python -m tools.benchmark_stream share --seconds 6 --device cuda --unet_config ... --unet_ckpt ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from latentsync.errors import StreamError
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.pipelines.frame_plan import pingpong_index
from latentsync.pipelines.loading import load_pipeline
from latentsync.settings import InferenceSettings
from latentsync.streaming import StreamOptions, StreamSession, WallClock

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A talking head reads the news on a quiet evening.",
    "Seven silver spoons sat beside the purple bowl.",
    "Please call me back when you have a minute.",
    "The weather will be sunny with a light breeze.",
)


def speech_with_pauses(seconds: float, folder: Path, source: str | None, seed: int = 0) -> np.ndarray:
    """``seconds`` of sentences, each followed by 0.6-2 s of digital silence; from espeak-ng, or cut from ``source``."""
    rng = np.random.default_rng(seed)
    if source is not None:
        audio = load_audio(source)
        pieces = [audio[i : i + 3 * SAMPLE_RATE] for i in range(0, len(audio), 3 * SAMPLE_RATE)]
    else:
        from tools.synthetic_media import speak

        pieces = [speak(text, folder / f"sentence{i}.wav") for i, text in enumerate(SENTENCES)]
    out, total, k = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        pause = np.zeros(int(rng.uniform(0.6, 2.0) * SAMPLE_RATE), np.float32)
        out += [pieces[k % len(pieces)].astype(np.float32), pause]
        total += len(out[-2]) + len(pause)
        k += 1
    return np.concatenate(out)[: int(seconds * SAMPLE_RATE)]


def make_avatar(folder: Path, size: int, seconds: float) -> tuple[str, np.ndarray]:
    """A synthetic talking head (closed mouth) of ``size`` pixels; its path and face boxes per frame."""
    from tools.synthetic_media import write_talking_video

    path = folder / f"avatar_{size}.mp4"
    silent = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    meta = write_talking_video(path, silent, size=(size, size), mouth_envelope=np.zeros(int(seconds * 25) + 1),
                               with_audio=False)
    return os.fspath(path), meta["face_boxes"]


def load(args: argparse.Namespace, folder: Path):
    """The pipeline: the given model files, or tiny random-weight ones written to ``folder``."""
    if args.unet_ckpt:
        files = (args.unet_config, args.unet_ckpt, args.whisper, args.vae)
    else:
        from tools.tiny_models import write_all

        models = write_all(folder / "models")
        files = (models.unet_config, models.unet_ckpt, models.whisper, models.vae)
    pipe = load_pipeline(files[0], files[1], whisper_path=files[2], vae_path=files[3], device=args.device,
                         face_detector="mediapipe")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def settings_of(args: argparse.Namespace, scheduler: str | None = None, steps: int | None = None) -> InferenceSettings:
    return InferenceSettings.from_config(
        inference_steps=steps or args.inference_steps, scheduler=scheduler or args.scheduler, seed=args.seed,
        guidance_scale=args.guidance_scale, enable_deepcache=args.enable_deepcache,
        deepcache_interval=args.deepcache_interval, audio_windows="stream")


def options_of(args: argparse.Namespace, cache: Path) -> StreamOptions:
    return StreamOptions(clip_frames=args.clip_frames, compute_margin=args.compute_margin,
                         avatar_cache_dir=os.fspath(cache), acceleration=args.acceleration)


def _position(frame_audio: np.ndarray, audio: np.ndarray, after: int = 0) -> int | None:
    """Where in the pushed audio, at or after sample ``after``, a frame's 640 samples come from (exact match), or
    None. The sentences repeat: the search starts past the previous onset's position, or a later onset would
    be matched with an earlier repetition of its sentence."""
    nonzero = np.flatnonzero(frame_audio)
    if not len(nonzero):
        return None
    first = nonzero[0]
    for candidate in np.flatnonzero(audio == frame_audio[first]) - first:
        if after <= candidate and np.array_equal(audio[candidate : candidate + len(frame_audio)], frame_audio):
            return int(candidate)
    return None


def realtime(pipe, args: argparse.Namespace, avatar: str, audio: np.ndarray, cache: Path) -> dict:
    """One real-time session: push ``audio`` at real-time pace in 20-40 ms chunks, read every frame."""
    settings, options = settings_of(args), options_of(args, cache)
    opened = time.perf_counter()
    session = StreamSession(pipe, avatar, settings, options, clock=WallClock())
    open_seconds = time.perf_counter() - opened
    pushes: list[tuple[float, int]] = []  # (time pushed, end sample of the chunk)
    rng = np.random.default_rng(args.seed)

    def pusher() -> None:
        start, position = time.monotonic(), 0
        try:
            while position < len(audio):
                size = int(rng.integers(320, 641))
                time.sleep(max(0.0, start + (position + size) / SAMPLE_RATE - time.monotonic()))
                session.push_audio(audio[position : position + size], SAMPLE_RATE)
                position += size
                pushes.append((time.monotonic(), position))
            session.finish()
        except StreamError:  # the reader gave up and closed the session
            pass

    load_before = os.getloadavg()[0]
    thread = threading.Thread(target=pusher, name="microphone", daemon=True)
    thread.start()
    reads = []  # (time read, index, synced, run start)
    previous_synced, gave_up, searched_from = False, False, 0
    for frame in session:
        now = time.monotonic()
        if now - (session.start_time + frame.index / 25) > args.give_up:
            gave_up = True
            break
        position = _position(frame.audio, audio, searched_from) if frame.synced and not previous_synced else None
        if position is not None:
            searched_from = position + 1
        reads.append((now, frame.index, frame.synced, position))
        previous_synced = frame.synced
    stats = session.stats
    start_time, planned = session.start_time, session.latency
    session.close()
    thread.join()

    push_times = np.array([t for t, _ in pushes])
    push_ends = np.array([end for _, end in pushes])
    onsets = []
    for when, _, _, position in reads:
        if position is not None:
            chunk = int(np.searchsorted(push_ends, position, side="right"))  # the chunk holding that sample
            onsets.append(when - push_times[min(chunk, len(push_times) - 1)])
    late_read = sum(when > start_time + index / 25 + 0.04 for when, index, _, _ in reads)
    span = reads[-1][0] - reads[0][0] if len(reads) > 1 else float("nan")
    per_clip = stats.seconds_per_clip[1:] or stats.seconds_per_clip  # the first includes one-off costs
    return {
        "frames": len(reads), "synced_frames": stats.synced_frames, "late_frames": stats.late_frames,
        "read_late_frames": int(late_read), "dropped_frames": stats.dropped_frames,
        "output_fps": (len(reads) - 1) / span if span == span else None,
        "capacity_fps": (options.clip_frames or pipe.num_frames) / statistics.median(per_clip) if per_clip else None,
        "clip_seconds_median": statistics.median(per_clip) if per_clip else None,
        "clip_seconds_max": max(per_clip) if per_clip else None,
        "first_frame_latency": onsets[0] if onsets else None,
        "onset_latency_mean": statistics.mean(onsets) if onsets else None,
        "onset_latency_max": max(onsets) if onsets else None, "onsets": len(onsets),
        "planned_latency": planned, "compute_margin": stats.compute_margin, "open_seconds": open_seconds,
        "avatar_seconds": stats.avatar_seconds, "avatar_prepared": stats.avatar_prepared,
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "gave_up": f"more than {args.give_up:g} s behind at frame {reads[-1][1] if reads else 0}" if gave_up else None,
    }


def quality(pipe, args: argparse.Namespace, avatar: str, boxes: np.ndarray, audio: np.ndarray, cache: Path) -> list:
    """Each sampler run's frames as fast as possible; face-box PSNR against the first run's."""
    from latentsync.metrics.image_similarity import psnr
    from tools.benchmark_unet import face_crop

    rows, reference = [], None
    with StreamSession(pipe, avatar, settings_of(args, "ddim", 1), options_of(args, cache)) as warm:  # first calls
        warm.push_audio(audio[:16000], SAMPLE_RATE)
        warm.finish()
        list(warm)
    for run in args.runs:
        scheduler, steps = run.split(":")
        started = time.perf_counter()
        with StreamSession(pipe, avatar, settings_of(args, scheduler, int(steps)), options_of(args, cache)) as session:
            for position in range(0, len(audio), 16000):
                session.push_audio(audio[position : position + 16000], SAMPLE_RATE)
            session.finish()
            frames = list(session)
        seconds = time.perf_counter() - started
        crops = [(f.index, face_crop(f.image, boxes[pingpong_index(f.index, len(boxes))])) for f in frames if f.synced]
        if reference is None:
            reference = dict(crops)
        scores = [min(psnr(reference[k], c), 99.0) for k, c in crops if k in reference and c is not None]
        rows.append({"run": run, "seconds": seconds, "frames_per_second": len(frames) / seconds,
                     "psnr": statistics.mean(scores) if scores else None, "synced_frames": len(crops)})
        print(f"{run:12s} {len(frames) / seconds:7.2f} frames/s as fast as possible; face box vs {args.runs[0]}: "
              f"PSNR {rows[-1]['psnr']:.2f} dB (99: identical)", flush=True)
    return rows


def unet_share(pipe, args: argparse.Namespace, avatar: str, audio: np.ndarray, cache: Path) -> dict:
    """UNet time and FLOPs while a session streams as fast as possible, against the matmul peak."""
    from tools.benchmark_unet import forward_flops, inputs_to, make_inputs, matmul_peak_tflops, synchronize

    device, unet = pipe.unet.device, pipe.unet
    clip = args.clip_frames or pipe.num_frames
    inputs = inputs_to(make_inputs(dict(unet.config), clip, pipe.resolution, args.seed), device, pipe.dtype)
    flops = forward_flops(unet, inputs)  # one forward of the CFG batch (2 x clip frames)
    peak = matmul_peak_tflops(device, pipe.dtype)
    spans: list = []
    cuda = device.type == "cuda"

    def before(module, inputs_):
        spans.append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)] if cuda
                     else [time.perf_counter(), None])
        if cuda:
            spans[-1][0].record()

    def after(module, inputs_, output):
        if cuda:
            spans[-1][1].record()
        else:
            spans[-1][1] = time.perf_counter()

    hooks = [unet.register_forward_pre_hook(before), unet.register_forward_hook(after)]
    settings = settings_of(args).replace(enable_deepcache=False, guidance_scale=max(args.guidance_scale, 1.01))
    try:
        started = time.perf_counter()
        with StreamSession(pipe, avatar, settings, options_of(args, cache)) as session:
            for position in range(0, len(audio), 16000):
                session.push_audio(audio[position : position + 16000], SAMPLE_RATE)
            session.finish()
            frames = len(list(session))
            generate = sum(session.stats.seconds_per_clip)
        wall = time.perf_counter() - started
    finally:
        for hook in hooks:
            hook.remove()
    synchronize(device)
    unet_seconds = sum(a.elapsed_time(b) / 1e3 if cuda else b - a for a, b in spans)
    achieved = flops * len(spans) / unet_seconds / 1e12
    result = {"forward_tflop": flops / 1e12, "forwards": len(spans), "unet_seconds": unet_seconds,
              "achieved_tflops": achieved, "peak_tflops": peak, "percent_of_peak": 100 * achieved / peak,
              "unet_share_of_generate": unet_seconds / generate if generate else None,
              "frames_per_second": frames / wall}
    print(f"UNet: {achieved:.3g} TFLOP/s = {100 * achieved / peak:.1f}% of the {peak:.3g} TFLOP/s matmul peak "
          f"({len(spans)} forwards of {flops / 1e12:.3g} TFLOP, CFG batch 2 x {clip} frames); the UNet is "
          f"{100 * unet_seconds / max(generate, 1e-9):.0f}% of the generate step; {frames / wall:.2f} frames/s "
          f"as fast as possible", flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("realtime", "quality", "share"), default="realtime")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the speech with pauses")
    parser.add_argument("--speech", help="a speech recording to cut sentences from (default: espeak-ng)")
    parser.add_argument("--avatar_size", type=int, default=256, help="avatar video side in pixels")
    parser.add_argument("--avatar_seconds", type=float, default=2.0)
    parser.add_argument("--unet_config", help="UNet config (with --unet_ckpt; default: the tiny test models)")
    parser.add_argument("--unet_ckpt")
    parser.add_argument("--whisper")
    parser.add_argument("--vae")
    parser.add_argument("--device", default="cpu", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the session already runs three threads of torch work)")
    parser.add_argument("--clip_frames", type=int, default=8)
    parser.add_argument("--inference_steps", type=int, default=5)
    parser.add_argument("--scheduler", default="dpm++", choices=("ddim", "dpm++"))
    parser.add_argument("--guidance_scale", type=float, default=1.5)
    parser.add_argument("--enable_deepcache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--deepcache_interval", type=int, default=3)
    parser.add_argument("--acceleration", default="none", choices=("none", "compile", "cudagraphs"))
    parser.add_argument("--compute_margin", type=float, help="seconds per clip to plan for (default: measured)")
    parser.add_argument("--seed", type=int, default=1247)
    parser.add_argument("--give_up", type=float, default=5.0,
                        help="realtime: stop when a frame is read more than this many seconds after it was due")
    parser.add_argument("--runs", nargs="+", default=["ddim:20", "ddim:10", "dpm++:10", "dpm++:6"],
                        help="quality: SAMPLER:STEPS runs, the first the reference")
    parser.add_argument("--json", help="also write the numbers here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="latentsync-bench-stream-") as tmp:
        folder = Path(tmp)
        pipe = load(args, folder)
        avatar, boxes = make_avatar(folder, args.avatar_size, args.avatar_seconds)
        audio = speech_with_pauses(args.seconds, folder, args.speech, args.seed)
        where = (f"{pipe.unet.device} {pipe.dtype}, {args.threads} torch thread(s), UNet {pipe.resolution} px, "
                 f"avatar {args.avatar_size}x{args.avatar_size} ({args.avatar_seconds:g} s), "
                 f"{'given' if args.unet_ckpt else 'tiny random-weight'} models")
        print(f"{len(audio) / SAMPLE_RATE:.0f} s of speech with pauses; {where}; load {os.getloadavg()[0]:.2f}",
              flush=True)
        if args.mode == "quality":
            result = {"runs": quality(pipe, args, avatar, boxes, audio, folder / "avatars")}
        elif args.mode == "share":
            result = unet_share(pipe, args, avatar, audio, folder / "avatars")
        else:
            result = realtime(pipe, args, avatar, audio, folder / "avatars")
            print(f"clip {args.clip_frames} frames, {args.scheduler} {args.inference_steps} steps, deep cache "
                  f"{'every ' + str(args.deepcache_interval) if args.enable_deepcache else 'off'}, CFG "
                  f"{args.guidance_scale}, acceleration {args.acceleration}")
            for key, value in result.items():
                print(f"  {key:22s} {value:.3f}" if isinstance(value, float) else f"  {key:22s} {value}")
        result.update(setup=where, mode=args.mode, seconds=args.seconds, clip_frames=args.clip_frames,
                      scheduler=args.scheduler, inference_steps=args.inference_steps,
                      enable_deepcache=args.enable_deepcache, acceleration=args.acceleration)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))
        pipe.face_detector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

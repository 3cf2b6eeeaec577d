"""The ``stream`` part of ``tools/gpu_check.py``: real-time streaming at real sizes, through ``tools/benchmark_stream.py``.

In child processes, on the prepared random weights (fp16 on CUDA), with speech with pauses cut from the
prepared recording and a synthetic 512x512 avatar:

1. ``stage2.yaml`` (1.5): face-box PSNR of DDIM 10 and DPM-Solver++ 10/8/6/5 streams against DDIM 20
   (as fast as possible); the fewest steps at or above :data:`MATCH_DB` "match" DDIM-20;
2. ``stage2.yaml`` on the wall clock at DDIM 20 (16-frame clips), and at the fewest matching steps:
   sustained frame rate, the generator's capacity, first-frame latency, late frames;
3. ``stage2_512.yaml`` (1.6) on the wall clock at a few settings (sampler, clip length, CUDA graphs):
   the highest capacity without late frames and its settings;
4. ``stage2_512.yaml``: the UNet's achieved TFLOP/s while streaming, as a share of the matmul peak.

With ``--tiny`` (the CPU dry run) each step runs once on the tiny models with a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from tools.gpu_check_inference import PROJECT_ROOT, fresh_folder, run_step

MATCH_DB = 35.0  # face-box PSNR against DDIM-20 taken as "the same frames" (benchmarks/RESULTS.md's measure)
REAL_SECONDS, TINY_SECONDS = 15.0, 3.0  # speech with pauses per real-time run (a run that falls 5 s behind stops)
QUALITY_SECONDS, TINY_QUALITY_SECONDS = 4.0, 2.0


def _bench(ctx: SimpleNamespace, emit: Callable[..., None], work: Path, name: str, config: str,
           mode: str, *extra: str) -> dict | None:
    """One ``tools.benchmark_stream`` child; its JSON result, or None (the failure emitted as row ``name``)."""
    made = ctx.made
    out = work / (name.replace(" ", "_").replace("/", "_") + ".json")
    args = ["-m", "tools.benchmark_stream", mode, "--unet_config", config, "--unet_ckpt", made["unet_ckpt"],
            "--whisper", made["whisper"], "--vae", made["vae"], "--device", ctx.device, "--speech", made["speech"],
            "--seed", str(ctx.seed), "--avatar_size", "128" if ctx.tiny else "512", "--json", str(out), *extra]
    ok, _, _ = run_step(ctx, emit, name, args, work / (out.stem + ".log"))
    return json.loads(out.read_text()) if ok and out.is_file() else None


def _realtime_text(result: dict) -> str:
    first, capacity = result.get("first_frame_latency"), result.get("capacity_fps") or 0.0
    text = (f"{result['output_fps'] or 0:.2f} frames/s out, capacity {capacity:.1f} frames/s "
            f"(median clip {result['clip_seconds_median'] or 0:.3f} s), first frame "
            f"{'n/a' if first is None else f'{first:.2f} s'} (planned {result['planned_latency']:.2f} s), "
            f"{result['late_frames']} late / {result['frames']} frames, {result['dropped_frames']} dropped")
    return text + (f"; stopped: {result['gave_up']}" if result.get("gave_up") else "")


def stream_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    work = fresh_folder(ctx, "stream")
    if ctx.tiny:
        stage2 = stage2_512 = ctx.made["unet_config"]
        reference, candidates, seconds, quality_seconds = "ddim:2", ["dpm++:2", "ddim:1"], TINY_SECONDS, TINY_QUALITY_SECONDS
        trials = [("dpm++", 2, 8, "none")]
    else:
        stage2 = str(PROJECT_ROOT / "configs/unet/stage2.yaml")
        stage2_512 = str(PROJECT_ROOT / "configs/unet/stage2_512.yaml")
        reference, candidates = "ddim:20", ["ddim:10", "dpm++:10", "dpm++:8", "dpm++:6", "dpm++:5"]
        seconds, quality_seconds = REAL_SECONDS, QUALITY_SECONDS
        trials = [("dpm++", 10, 16, "none"), ("dpm++", 10, 16, "cudagraphs"), ("dpm++", 6, 16, "cudagraphs"),
                  ("dpm++", 6, 8, "cudagraphs")]
    label = "tiny UNet" if ctx.tiny else "stage2 (1.5)"

    # 1. Which sampler settings give DDIM-20's frames.
    quality = _bench(ctx, emit, work, f"{label} samplers", stage2, "quality", "--clip_frames", "16",
                     "--seconds", str(quality_seconds), "--runs", reference, *candidates)
    fewest = reference
    if quality:
        for run in quality["runs"]:
            emit(f"{label} {run['run']}", f"face box vs {reference}: PSNR {run['psnr']:.2f} dB; "
                 f"{run['frames_per_second']:.2f} frames/s as fast as possible", **run)
        matching = [r["run"] for r in quality["runs"][1:] if r["psnr"] is not None and r["psnr"] >= MATCH_DB]
        if matching:
            fewest = min(matching, key=lambda run: int(run.split(":")[1]))

    # 2. 1.5 in real time at DDIM-20, and at the fewest matching steps.
    for run in dict.fromkeys([reference, fewest]):
        scheduler, steps = run.split(":")
        result = _bench(ctx, emit, work, f"{label} real time {run}", stage2, "realtime", "--seconds", str(seconds),
                        "--clip_frames", "16", "--scheduler", scheduler, "--inference_steps", steps)
        if result:
            emit(f"{label} real time {run}, 16-frame clips", _realtime_text(result), **result)

    # 3. 1.6: the highest sustained rate and its settings.
    label_512 = "tiny UNet" if ctx.tiny else "stage2_512 (1.6)"
    best = None
    for scheduler, steps, clip, acceleration in trials:
        name = f"{label_512} real time {scheduler}:{steps}, {clip}-frame clips, {acceleration}"
        result = _bench(ctx, emit, work, name, stage2_512, "realtime", "--seconds", str(seconds), "--clip_frames",
                        str(clip), "--scheduler", scheduler, "--inference_steps", str(steps),
                        "--acceleration", acceleration)
        if result:
            emit(name, _realtime_text(result), **result)
            if (result["late_frames"] == 0 and not result["gave_up"] and result["capacity_fps"]
                    and (best is None or result["capacity_fps"] > best[1]["capacity_fps"])):
                best = (name, result)
    if best:
        emit(f"{label_512} best", f"{best[0]}: capacity {best[1]['capacity_fps']:.1f} frames/s, no late frame",
             **best[1])
    elif not ctx.tiny:
        emit(f"{label_512} best", "no setting ran without late frames", status="failed")

    # 4. The UNet's share of the matmul peak while streaming.
    share = _bench(ctx, emit, work, f"{label_512} UNet share", stage2_512, "share", "--seconds", str(quality_seconds),
                   "--clip_frames", "16", "--scheduler", "ddim", "--inference_steps", "2" if ctx.tiny else "20")
    if share:
        emit(f"{label_512} UNet share", f"{share['achieved_tflops']:.3g} TFLOP/s = {share['percent_of_peak']:.1f}% of "
             f"the {share['peak_tflops']:.3g} TFLOP/s matmul peak while streaming; the UNet is "
             f"{100 * share['unet_share_of_generate']:.0f}% of the generate step", **share)

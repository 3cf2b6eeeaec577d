"""Peak memory and speed of inference versus input length, with tiny random-weight models on CPU.

Streaming should make peak resident memory independent of the video's length. This makes a
talking-head video + speech of each length (astronaut photo, espeak), runs the real pipeline
on it in a fresh process per length (so ``ru_maxrss`` is that run's own peak), and prints peak
RSS, frames per second and the ratio of the peaks (target: within 15%).

  .venv/bin/python -m tools.benchmark_inference                 # 10 s and 120 s
  .venv/bin/python -m tools.benchmark_inference --seconds 5 30 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def make_inputs(folder: str, seconds: float, size: int) -> tuple[str, str]:
    """Speech looped to ``seconds`` and a matching talking-head video."""
    from tools.synthetic_media import speak, write_talking_video, write_wav

    speech = speak("The quick brown fox jumps over the lazy dog, again and again.", os.path.join(folder, "s.wav"))
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(speech)))
    audio = np.tile(speech, repeats)[: int(seconds * SAMPLE_RATE)]
    audio_path = os.path.join(folder, f"audio_{seconds:g}s.wav")
    video_path = os.path.join(folder, f"video_{seconds:g}s.mp4")
    write_wav(audio_path, audio)
    write_talking_video(video_path, audio, size=(size, size), with_audio=False)
    return video_path, audio_path


def child(args: argparse.Namespace) -> None:
    """One measured run; prints a JSON line with the peak RSS and timing."""
    import torch

    from latentsync.pipelines.loading import load_pipeline

    torch.set_num_threads(args.threads)
    models = json.loads(args.models)
    pipe = load_pipeline(
        models["unet_config"], models["unet_ckpt"], whisper_path=models["whisper"], vae_path=models["vae"],
        device="cpu", face_detector="mediapipe",
    )
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        report = pipe(
            args.video, args.audio, os.path.join(out_dir, "out.mp4"),
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(0),
        )
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"frames": report.frames, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 120], help="input lengths (default: 10 120)")
    parser.add_argument("--size", type=int, default=128, help="video side in pixels (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return

    from tools.tiny_models import write_all

    results = []
    with tempfile.TemporaryDirectory(prefix="latentsync-bench-") as tmp:
        models = write_all(Path(tmp) / "models")
        paths = {k: str(v) for k, v in vars(models).items()}
        for seconds in args.seconds:
            video, audio = make_inputs(tmp, seconds, args.size)
            cmd = [sys.executable, "-m", "tools.benchmark_inference", "--child", "--video", video, "--audio", audio,
                   "--models", json.dumps(paths), "--steps", str(args.steps), "--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                sys.exit(f"benchmark run for {seconds:g} s failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["input_seconds"] = seconds
            results.append(result)
            print(
                f"{seconds:6.0f} s input: {result['frames']:5d} frames, peak RSS {result['peak_rss_mib']:7.1f} MiB, "
                f"{result['frames'] / result['seconds']:6.2f} frames/s ({result['seconds']:.1f} s)",
                flush=True,
            )
    peaks = [r["peak_rss_mib"] for r in results]
    ratio = max(peaks) / min(peaks)
    print(f"peak RSS ratio (largest / smallest): {ratio:.3f} ({(ratio - 1) * 100:.1f}% apart; target < 15%)")


if __name__ == "__main__":
    main()

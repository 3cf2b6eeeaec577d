"""Lip-sync a video (or a still image) to an audio file with LatentSync.

Examples (from the project root):
  python -m scripts.inference --video_path face.mp4 --audio_path speech.wav --video_out_path out.mp4
  python -m scripts.inference --batch pairs.csv         # rows: video,audio,output (relative to the csv)
  python -m scripts.inference --batch folder/ --output_dir synced/   # name.mp4 + name.wav pairs

Defaults come from --config (configs/inference.yaml); any flag overrides its key. The output is
written under a temporary name beside the target and renamed when complete.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time
from dataclasses import dataclass

import torch

from latentsync import paths
from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError, LatentSyncError, MediaError
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.pipelines.loading import load_pipeline
from latentsync.pipelines.progress import TqdmProgress
from latentsync.utils.logging import configure_logging

logger = logging.getLogger("inference")

DEFAULT_CONFIG = paths.shown_path(paths.INFERENCE_CONFIG)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".png", ".jpg", ".jpeg")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")


# --------------------------------------------------------------------------- arguments


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's line breaks and show each option's default (from --config)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.inference", description=__doc__, formatter_class=_HelpFormatter)
    add = parser.add_argument
    add("--config", default=DEFAULT_CONFIG, help="YAML file with the defaults of every option below")
    add("--unet_config_path", help="UNet config: configs/unet/stage2_512.yaml (1.6) or stage2.yaml (1.5)")
    add("--inference_ckpt_path", help="UNet weights, {'state_dict', 'global_step'} .pt")
    add("--whisper_path", help="Whisper checkpoint; None: checkpoints/whisper/tiny.pt or small.pt by the UNet's audio width")
    add("--vae_path", help="folder of a diffusers AutoencoderKL (config.json + weights)")
    add("--video_path", help="input video or still image")
    add("--audio_path", help="input audio (any format ffmpeg reads, or a video's audio track)")
    add("--video_out_path", help="output .mp4 (lasts as long as the audio)")
    add("--inference_steps", type=int, help="DDIM steps: 20-50, more is slower and slightly sharper")
    add("--guidance_scale", type=float, help="classifier-free guidance strength; 1.0 turns it off, 1.5-2.0 syncs harder")
    add("--seed", type=int, help="random seed of the initial noise; -1 picks a fresh one")
    add("--enable_deepcache", action=argparse.BooleanOptionalAction, help="reuse deep UNet features between steps (faster)")
    add("--deepcache_interval", type=int, help="with deep caching, recompute deep features every N steps")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), help="where to run; auto = cuda, then mps, then cpu")
    add("--face_detector", choices=("auto", "insightface", "mediapipe"), help="face detector backend")
    add("--face_index", type=int, help="which face to sync: k-th from the left where faces first appear (default: largest)")
    add("--audio_windows", choices=("overlap", "upstream"), help="Whisper windowing: overlap (no 30 s seams) or upstream")
    add("--audio_cache_dir", help="cache Whisper features here, keyed by audio content")
    add("--temp_dir", help="parent folder of the private working folder (removed afterwards)")
    add("--batch", help="a .csv of video,audio,output rows, or a folder of name.<video> + name.<audio> pairs")
    add("--output_dir", help="with --batch FOLDER: where outputs go (default: FOLDER/lipsynced)")
    add("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags override the --config file's values, which are the only defaults."""
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    defaults = to_container(load_config(known.config))
    unknown = sorted(set(defaults) - {action.dest for action in parser._actions})
    if unknown:
        raise ConfigError(f"config {known.config} has unknown keys: {', '.join(unknown)}")
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- models


def load_models(args: argparse.Namespace) -> LipsyncPipeline:
    """The pipeline and its face detector, built once (batch runs reuse them)."""
    return load_pipeline(
        args.unet_config_path,
        args.inference_ckpt_path,
        whisper_path=args.whisper_path,
        vae_path=args.vae_path,
        device=args.device,
        face_detector=args.face_detector,
        audio_windows=args.audio_windows,
        audio_cache_dir=args.audio_cache_dir,
        deepcache_interval=args.deepcache_interval if args.enable_deepcache else None,
    )


# --------------------------------------------------------------------------- one pair / a batch


@dataclass(frozen=True)
class Job:
    video: str
    audio: str
    output: str


def run_job(pipeline: LipsyncPipeline, job: Job, args: argparse.Namespace) -> None:
    seed = args.seed if args.seed != -1 else int(torch.seed() % (2**31))
    logger.info("syncing %s to %s (seed %d)", job.video, job.audio, seed)
    pipeline(
        job.video,
        job.audio,
        job.output,
        num_inference_steps=args.inference_steps,
        guidance_scale=args.guidance_scale,
        generator=pipeline.make_generator(seed),
        face_index=args.face_index,
        temp_dir=args.temp_dir,
        progress=TqdmProgress(),
    )


def batch_jobs(spec: str, output_dir: str | None) -> list[Job]:
    """Pairs from a csv (video,audio,output per row; relative to the csv; a header row is skipped)
    or from a folder (name.<video ext> with name.<audio ext>, output <output_dir>/name.mp4)."""
    if os.path.isfile(spec):
        base = os.path.dirname(os.path.abspath(spec))
        jobs = []
        with open(spec, newline="", encoding="utf-8") as f:
            for number, row in enumerate(csv.reader(f), 1):
                row = [cell.strip() for cell in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if number == 1 and [c.lower() for c in row[:3]] == ["video", "audio", "output"]:
                    continue
                if len(row) != 3:
                    raise ConfigError(f"{spec} line {number}: expected video,audio,output, got {len(row)} fields")
                jobs.append(Job(*(os.path.join(base, cell) for cell in row)))
        return jobs
    if os.path.isdir(spec):
        out_dir = output_dir or os.path.join(spec, "lipsynced")
        names = sorted(os.listdir(spec))
        stems = {}
        for name in names:
            stem, ext = os.path.splitext(name)
            stems.setdefault(stem, {})[ext.lower()] = os.path.join(spec, name)
        jobs = []
        for stem, files in sorted(stems.items()):
            video = next((files[e] for e in VIDEO_EXTENSIONS if e in files), None)
            audio = next((files[e] for e in AUDIO_EXTENSIONS if e in files), None)
            if video and audio:
                jobs.append(Job(video, audio, os.path.join(out_dir, stem + ".mp4")))
        if not jobs:
            raise ConfigError(f"no video + audio pairs with the same name in {spec}")
        return jobs
    raise ConfigError(f"--batch {spec!r} is neither a csv file nor a folder")


def run_batch(pipeline: LipsyncPipeline, jobs: list[Job], args: argparse.Namespace) -> int:
    done = skipped = 0
    failures: list[str] = []
    for index, job in enumerate(jobs, 1):
        if os.path.isfile(job.output) and os.path.getsize(job.output) > 0:
            logger.info("[%d/%d] %s exists, skipping", index, len(jobs), job.output)
            skipped += 1
            continue
        logger.info("[%d/%d] %s", index, len(jobs), job.output)
        try:
            run_job(pipeline, job, args)
            done += 1
        except LatentSyncError as err:
            failures.append(f"{job.video} + {job.audio}: {one_line(err)}")
            logger.error("[%d/%d] failed: %s", index, len(jobs), one_line(err))
    logger.info("batch: %d synced, %d already done, %d failed", done, skipped, len(failures))
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def one_line(err: BaseException) -> str:
    """The first line of a message plus its last detail line (ffmpeg stderr tails run long)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        configure_logging(args.verbose)
        start = time.monotonic()
        if args.batch:
            jobs = batch_jobs(args.batch, args.output_dir)
            return run_batch(load_models(args), jobs, args)
        missing = [flag for flag in ("video_path", "audio_path", "video_out_path") if not getattr(args, flag)]
        if missing:
            raise ConfigError("missing " + ", ".join("--" + flag for flag in missing))
        for flag in ("video_path", "audio_path"):
            if not os.path.isfile(getattr(args, flag)):
                raise MediaError(f"{flag.split('_')[0]} file not found: {getattr(args, flag)!r}")
        job = Job(args.video_path, args.audio_path, args.video_out_path)
        run_job(load_models(args), job, args)
        logger.info("done in %.1f s: %s", time.monotonic() - start, args.video_out_path)
        return 0
    except LatentSyncError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Lip-sync a video (or a still image) to an audio file with LatentSync.

Examples:
  ./inference.sh --video_path face.mp4 --audio_path speech.wav --video_out_path out.mp4
  python -m scripts.inference --batch pairs.csv         # rows: video,audio,output (relative to the csv)
  python -m scripts.inference --batch folder/ --output_dir synced/   # name.mp4 + name.wav pairs

Defaults come from --config (configs/inference.yaml); any flag overrides its key. Paths given as
flags are relative to the current folder; relative paths inside a config file are relative to
the project root (for the project's own configs) or to the config file's folder. The output is
written under a temporary name beside the target and renamed when complete; bad input, an
interrupt (Ctrl-C, SIGTERM) or a failure leave nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import Iterator

import torch

from latentsync import paths
from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError, LatentSyncError
from latentsync.media.writer import ARCHIVAL_ENCODING, FAST_ENCODING
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.pipelines.loading import DEFAULT_SCHEDULER, SCHEDULERS, load_pipeline, max_inference_steps
from latentsync.pipelines.progress import TqdmProgress
from latentsync.utils.files import check_output_path, check_writable_folder, require_file
from latentsync.utils.logging import configure_logging

logger = logging.getLogger("inference")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".png", ".jpg", ".jpeg")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
# Options naming files or folders: relative values in a config file are resolved against it (see above).
PATH_OPTIONS = (
    "unet_config_path", "inference_ckpt_path", "whisper_path", "vae_path", "video_path", "audio_path",
    "video_out_path", "audio_cache_dir", "temp_dir", "batch", "output_dir",
)
# Options every run needs a value for, from the config file or a flag.
REQUIRED_OPTIONS = (
    "unet_config_path", "inference_ckpt_path", "vae_path", "inference_steps", "guidance_scale", "seed",
    "enable_deepcache", "deepcache_interval", "device", "face_detector", "audio_windows", "archival",
)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (every ``finally`` removes what it made) and exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --------------------------------------------------------------------------- arguments


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's line breaks and show each option's default (from --config)."""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes become a ConfigError: one ``error:`` line like every other failure."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m scripts.inference", description=__doc__, formatter_class=_HelpFormatter)
    add = parser.add_argument
    add("--config", default=str(paths.INFERENCE_CONFIG), help="YAML file with the defaults of every option below")
    add("--unet_config_path", help="UNet config: configs/unet/stage2_512.yaml (1.6) or stage2.yaml (1.5)")
    add("--inference_ckpt_path", help="UNet weights, {'state_dict', 'global_step'} .pt")
    add("--whisper_path", help="Whisper checkpoint; None: checkpoints/whisper/tiny.pt or small.pt by the UNet's audio width")
    add("--vae_path", help="folder of a diffusers AutoencoderKL (config.json + weights)")
    add("--video_path", help="input video or still image")
    add("--audio_path", help="input audio (any format ffmpeg reads, or a video's audio track)")
    add("--video_out_path", help="output .mp4/.mov/.m4v/.mkv (lasts as long as the audio)")
    add("--inference_steps", type=int, help="denoising steps: DDIM 20-50 (more is slower, slightly sharper); dpm++ 10-20")
    add("--scheduler", choices=tuple(SCHEDULERS), help="sampler: ddim, or dpm++ (DPM-Solver++: close to DDIM in half the steps)")
    add("--guidance_scale", type=float, help="classifier-free guidance strength; 1.0 turns it off, 1.5-2.0 syncs harder")
    add("--seed", type=int, help="random seed of the initial noise; -1 picks a fresh one")
    add("--enable_deepcache", action=argparse.BooleanOptionalAction, help="reuse deep UNet features between steps (faster)")
    add("--deepcache_interval", type=int, help="with deep caching, recompute deep features every N steps")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), help="where to run; auto = cuda, then mps, then cpu")
    add("--face_detector", choices=("auto", "insightface", "mediapipe"), help="face detector backend")
    add("--face_index", type=int, help="which face to sync: k-th from the left where faces first appear (default: largest)")
    add("--audio_windows", choices=("overlap", "upstream"), help="Whisper windowing: overlap (no 30 s seams) or upstream")
    add("--audio_cache_dir", help="cache Whisper features here, keyed by audio content")
    add("--detect_every", type=int, help="run the face detector on every N-th frame, interpolating in between (1: all)")
    add("--detect_max_side", type=int, help="shrink frames to at most N pixels for face detection (0: full size)")
    add("--archival", action=argparse.BooleanOptionalAction,
        help="encode the output slowly at high quality (libx264 slow, CRF 18) instead of for throughput")
    add("--temp_dir", help="parent folder of the private working folder (created if missing; removed afterwards)")
    add("--batch", help="a .csv of video,audio,output rows, or a folder of name.<video> + name.<audio> pairs")
    add("--output_dir", help="with --batch FOLDER: where outputs go (default: FOLDER/lipsynced)")
    add("-v", "--verbose", action="store_true", help="debug logging, and the face detector's native log lines")
    return parser


def _config_defaults(config_path: str) -> dict:
    """The config file's values, its relative paths resolved against the project (or the file's folder)."""
    if not config_path:
        raise ConfigError("--config is empty; pass a YAML file such as configs/inference.yaml")
    defaults = to_container(load_config(config_path))
    config_dir = os.path.dirname(os.path.realpath(config_path))
    inside_project = os.path.commonpath([config_dir, str(paths.PROJECT_ROOT)]) == str(paths.PROJECT_ROOT)
    base = str(paths.PROJECT_ROOT) if inside_project else config_dir
    for key in PATH_OPTIONS:
        value = defaults.get(key)
        if isinstance(value, str) and value:
            defaults[key] = os.path.join(base, os.path.expanduser(value))
    return defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags override the --config file's values, which are the only defaults."""
    parser = build_parser()
    pre = _Parser(add_help=False)
    pre.add_argument("--config", default=str(paths.INFERENCE_CONFIG))
    known, _ = pre.parse_known_args(argv)
    defaults = _config_defaults(known.config)
    unknown = sorted(set(defaults) - {action.dest for action in parser._actions})
    if unknown:
        raise ConfigError(f"config {known.config} has unknown keys: {', '.join(unknown)}")
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    missing = [key for key in REQUIRED_OPTIONS if getattr(args, key) is None]
    if missing:
        raise ConfigError(
            f"no value for {', '.join('--' + key for key in missing)}: config {known.config} does not set "
            f"{'it' if len(missing) == 1 else 'them'}; pass {'it' if len(missing) == 1 else 'them'} as flags "
            f"or use {paths.shown_path(paths.INFERENCE_CONFIG)}"
        )
    check_options(args)
    return args


def check_options(args: argparse.Namespace) -> None:
    """Refuse values that would fail later (after loading models), naming the flag and its range."""
    most = max_inference_steps()
    if not 1 <= args.inference_steps <= most:
        raise ConfigError(f"--inference_steps must be between 1 and {most}, got {args.inference_steps}")
    if args.deepcache_interval < 1:
        raise ConfigError(f"--deepcache_interval must be >= 1 (1 = no reuse), got {args.deepcache_interval}")
    if not math.isfinite(args.guidance_scale) or args.guidance_scale < 0:
        raise ConfigError(f"--guidance_scale must be a finite number >= 0 (1.0 = off), got {args.guidance_scale}")
    if not -1 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be -1 (a fresh seed) or between 0 and 2**63 - 1, got {args.seed}")
    if args.detect_every is not None and args.detect_every < 1:
        raise ConfigError(f"--detect_every must be >= 1 (1 = every frame), got {args.detect_every}")
    if args.detect_max_side is not None and args.detect_max_side < 0:
        raise ConfigError(f"--detect_max_side must be >= 0 (0 = full size), got {args.detect_max_side}")
    if args.face_index is not None and args.face_index < 0:
        raise ConfigError(f"--face_index counts faces from 0 (left to right), got {args.face_index}")
    for flag in ("audio_cache_dir", "temp_dir"):
        folder = getattr(args, flag)
        if folder is not None:
            check_writable_folder(folder, f"--{flag}")


# --------------------------------------------------------------------------- models


def load_models(args: argparse.Namespace) -> LipsyncPipeline:
    """The pipeline and its face detector, built once (batch runs reuse them)."""
    pipeline = load_pipeline(
        args.unet_config_path,
        args.inference_ckpt_path,
        whisper_path=args.whisper_path,
        vae_path=args.vae_path,
        device=args.device,
        face_detector=args.face_detector,
        audio_windows=args.audio_windows,
        audio_cache_dir=args.audio_cache_dir,
        deepcache_interval=args.deepcache_interval if args.enable_deepcache else None,
        show_native_logs=args.verbose,
        scheduler=args.scheduler or DEFAULT_SCHEDULER,
    )
    pipeline.video_encoding = ARCHIVAL_ENCODING if args.archival else FAST_ENCODING
    if args.detect_every is not None:
        pipeline.face_options = replace(pipeline.face_options, detect_every=args.detect_every)
    if args.detect_max_side is not None:
        pipeline.face_options = replace(pipeline.face_options, detect_max_side=args.detect_max_side or None)
    return pipeline


# --------------------------------------------------------------------------- one pair / a batch


@dataclass(frozen=True)
class Job:
    video: str
    audio: str
    output: str


def check_job(job: Job) -> None:
    """Inputs that exist and an output that can be written without replacing them: checked before any model work."""
    require_file(job.video, "video")
    require_file(job.audio, "audio")
    check_output_path(job.output, (job.video, job.audio))


def run_job(pipeline: LipsyncPipeline, job: Job, args: argparse.Namespace) -> None:
    seed = args.seed if args.seed != -1 else int(torch.seed() % (2**31))
    logger.info("syncing %s to %s (seed %d)", job.video, job.audio, seed)
    with contextlib.closing(TqdmProgress()) as progress:  # bars of an interrupted stage close before the error line
        pipeline(
            job.video,
            job.audio,
            job.output,
            num_inference_steps=args.inference_steps,
            guidance_scale=args.guidance_scale,
            generator=pipeline.make_generator(seed),
            face_index=args.face_index,
            temp_dir=args.temp_dir,
            progress=progress,
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


def run_batch(pipeline: LipsyncPipeline, jobs: list[Job], args: argparse.Namespace, failures: list[str]) -> int:
    """Try every row (``failures`` already holds the rows refused before loading); report each failure."""
    done = skipped = 0
    for index, job in enumerate(jobs, 1):
        if os.path.isfile(job.output) and os.path.getsize(job.output) > 0:
            logger.info("[%d/%d] %s exists, skipping", index, len(jobs), job.output)
            skipped += 1
            continue
        logger.info("[%d/%d] %s", index, len(jobs), job.output)
        try:
            run_job(pipeline, job, args)
            done += 1
        except (LatentSyncError, OSError) as err:
            failures.append(f"{job.video} + {job.audio}: {one_line(err)}")
            logger.error("[%d/%d] failed: %s", index, len(jobs), one_line(err))
    logger.info("batch: %d synced, %d already done, %d failed", done, skipped, len(failures))
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    if failures:
        print(f"error: {len(failures)} of {done + skipped + len(failures)} rows failed (listed above)", file=sys.stderr)
    return 1 if failures else 0


def one_line(err: BaseException) -> str:
    """The first line of a message plus its last detail line (ffmpeg stderr tails run long)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the block, so cleanup runs for both."""
    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def made_folder(folder: str | None) -> Iterator[None]:
    """Create ``folder`` if it is missing, and remove it afterwards if this run created it and left it empty."""
    if folder is None or os.path.isdir(folder):
        yield
        return
    os.makedirs(folder)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only if empty: never delete what is inside


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    if args.batch:
        failures = []
        jobs = []
        for job in batch_jobs(args.batch, args.output_dir):
            try:
                check_job(job)
                jobs.append(job)
            except LatentSyncError as err:
                failures.append(f"{job.video} + {job.audio}: {one_line(err)}")
        if not jobs:
            for failure in failures:
                print(f"failed: {failure}", file=sys.stderr)
            raise ConfigError(f"none of the {len(failures)} rows of {args.batch} can run (listed above)")
    else:
        missing = [flag for flag in ("video_path", "audio_path", "video_out_path") if not getattr(args, flag)]
        if missing:
            raise ConfigError("missing " + ", ".join("--" + flag for flag in missing))
        jobs = [Job(args.video_path, args.audio_path, args.video_out_path)]
        check_job(jobs[0])
    with made_folder(args.temp_dir):
        pipeline = load_models(args)
        try:
            if args.batch:
                return run_batch(pipeline, jobs, args, failures)
            run_job(pipeline, jobs[0], args)
        finally:
            close = getattr(pipeline.face_detector, "close", None)
            if close is not None:
                close()
    logger.info("done in %.1f s: %s", time.monotonic() - start, args.video_out_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    with signals_raise():
        try:
            args = parse_args(argv)
            configure_logging(args.verbose)
            return run(args)
        except (LatentSyncError, OSError) as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            return 1
        except Interrupted as stop:
            print(f"error: interrupted by {stop}; the output being written was removed", file=sys.stderr)
            return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())

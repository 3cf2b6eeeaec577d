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
import os
import sys
import time
from typing import TYPE_CHECKING

from latentsync.cli import ArgumentParser, made_folder, run_main
from latentsync.errors import CheckpointError, ConfigError, LatentSyncError, one_line
from latentsync.media.formats import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from latentsync.pipelines.loading import load_pipeline_for, make_detector, missing_model_files
from latentsync.pipelines.progress import TqdmProgress
from latentsync.pipelines.video_runner import VideoJob, sync_video
from latentsync.settings import HelpFormatter, InferenceSettings, add_setting_flags, parse_settings
from latentsync.utils.files import check_output_path, check_writable_folder, require_file
from latentsync.utils.logging import configure_logging

if TYPE_CHECKING:  # diffusers, imported by loading when the models load (while the faces are being found)
    from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline

logger = logging.getLogger("inference")


# --------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    """``--config``, one flag per setting (latentsync/settings.py), then the batch and logging flags."""
    parser = ArgumentParser(prog="python -m scripts.inference", description=__doc__, formatter_class=HelpFormatter)
    add_setting_flags(parser)
    add = parser.add_argument
    add("--batch", help="a .csv of video,audio,output rows, or a folder of name.<video> + name.<audio> pairs")
    add("--output_dir", help="with --batch FOLDER: where outputs go (default: FOLDER/lipsynced)")
    add("-v", "--verbose", action="store_true", help="debug logging, and the face detector's native log lines")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, InferenceSettings]:
    """The command line's own flags and the settings: flags override the --config file's values, the only defaults.

    Values are checked when the settings are made; the folders named are checked here, before any model loads.
    """
    args, settings = parse_settings(build_parser(), argv)
    for name in ("audio_cache_dir", "temp_dir"):
        folder = getattr(settings, name)
        if folder is not None:
            check_writable_folder(folder, f"--{name}")
    return args, settings


# --------------------------------------------------------------------------- one pair / a batch


def check_job(job: InferenceSettings) -> None:
    """Inputs that exist and an output that can be written without replacing them: checked before any model work."""
    require_file(job.video_path, "video")
    require_file(job.audio_path, "audio")
    check_output_path(job.video_out_path, (job.video_path, job.audio_path))


def run_job(pipeline: LipsyncPipeline, job: InferenceSettings) -> None:
    with contextlib.closing(TqdmProgress()) as progress:  # bars of an interrupted stage close before the error line
        sync_video(pipeline, job, progress=progress)


def batch_jobs(spec: str, output_dir: str | None, settings: InferenceSettings) -> list[InferenceSettings]:
    """The settings of every pair, from a csv (video,audio,output per row; relative to the csv; a header row is
    skipped) or from a folder (name.<video or image> with name.<audio>, output <output_dir>/name.mp4)."""
    if os.path.isfile(spec):
        base = os.path.dirname(os.path.abspath(spec))
        rows = []
        with open(spec, newline="", encoding="utf-8") as f:
            for number, row in enumerate(csv.reader(f), 1):
                row = [cell.strip() for cell in row]
                if not row or not any(row) or row[0].startswith("#"):
                    continue
                if number == 1 and [c.lower() for c in row[:3]] == ["video", "audio", "output"]:
                    continue
                if len(row) != 3:
                    raise ConfigError(f"{spec} line {number}: expected video,audio,output, got {len(row)} fields")
                rows.append([os.path.join(base, cell) for cell in row])
    elif os.path.isdir(spec):
        out_dir = output_dir or os.path.join(spec, "lipsynced")
        stems: dict[str, dict[str, str]] = {}
        for name in sorted(os.listdir(spec)):
            stem, ext = os.path.splitext(name)
            stems.setdefault(stem, {})[ext.lower()] = os.path.join(spec, name)
        rows = []
        for stem, files in sorted(stems.items()):
            video = next((files[e] for e in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS if e in files), None)
            audio = next((files[e] for e in AUDIO_EXTENSIONS if e in files), None)
            if video and audio:
                rows.append([video, audio, os.path.join(out_dir, stem + ".mp4")])
        if not rows:
            raise ConfigError(f"no video + audio pairs with the same name in {spec}")
    else:
        raise ConfigError(f"--batch {spec!r} is neither a csv file nor a folder")
    return [settings.replace(video_path=video, audio_path=audio, video_out_path=output) for video, audio, output in rows]


def run_batch(pipeline: LipsyncPipeline, jobs: list[InferenceSettings], failures: list[str]) -> int:
    """Try every row (``failures`` already holds the rows refused before loading); report each failure."""
    done = skipped = 0
    for index, job in enumerate(jobs, 1):
        output = job.video_out_path
        if os.path.isfile(output) and os.path.getsize(output) > 0:
            logger.info("[%d/%d] %s exists, skipping", index, len(jobs), output)
            skipped += 1
            continue
        logger.info("[%d/%d] %s", index, len(jobs), output)
        try:
            run_job(pipeline, job)
            done += 1
        except (LatentSyncError, OSError) as err:
            failures.append(f"{job.video_path} + {job.audio_path}: {one_line(err)}")
            logger.error("[%d/%d] failed: %s", index, len(jobs), one_line(err))
    logger.info("batch: %d synced, %d already done, %d failed", done, skipped, len(failures))
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    if failures:
        print(f"error: {len(failures)} of {done + skipped + len(failures)} rows failed (listed above)", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, settings: InferenceSettings) -> int:
    start = time.monotonic()
    if args.batch:
        failures = []
        jobs = []
        for job in batch_jobs(args.batch, args.output_dir, settings):
            try:
                check_job(job)
                jobs.append(job)
            except LatentSyncError as err:
                failures.append(f"{job.video_path} + {job.audio_path}: {one_line(err)}")
        if not jobs:
            for failure in failures:
                print(f"failed: {failure}", file=sys.stderr)
            raise ConfigError(f"none of the {len(failures)} rows of {args.batch} can run (listed above)")
        with made_folder(settings.temp_dir):
            pipeline = load_pipeline_for(settings, show_native_logs=args.verbose)
            try:
                return run_batch(pipeline, jobs, failures)
            finally:
                _close(pipeline.face_detector)
    missing = [flag for flag in ("video_path", "audio_path", "video_out_path") if not getattr(settings, flag)]
    if missing:
        raise ConfigError("missing " + ", ".join("--" + flag for flag in missing))
    check_job(settings)
    absent = missing_model_files(settings.unet_config_path, settings.inference_ckpt_path, settings.whisper_path,
                                 settings.vae_path)
    if absent:
        raise CheckpointError("; ".join(absent))
    with made_folder(settings.temp_dir):
        # The job opens first (video probed, audio decoded, the face pass started in its thread), then
        # the networks import and load while the faces are being found.
        detector = make_detector(settings.face_detector, settings.device, show_native_logs=args.verbose)
        try:
            with contextlib.closing(TqdmProgress()) as progress, VideoJob(settings, detector, progress=progress) as job:
                job.sync(load_pipeline_for(settings, face_detector=detector, show_native_logs=args.verbose))
        finally:
            _close(detector)
    logger.info("done in %.1f s: %s", time.monotonic() - start, settings.video_out_path)
    return 0


def _close(detector) -> None:
    close = getattr(detector, "close", None)
    if close is not None:
        close()


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args, settings = parse_args(argv)
        configure_logging(args.verbose)
        return run(args, settings)

    return run_main(body, "the output being written was removed")


if __name__ == "__main__":
    sys.exit(main())

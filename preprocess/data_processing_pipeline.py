"""Raw talking-head videos in, aligned 25 fps / 16 kHz training clips out (``high_visual_quality/``).

    python -m preprocess.data_processing_pipeline --input_dir RAW [--output_dir OUT] [options]

Steps, each over the previous step's kept items, each with a manifest in ``OUT/manifests/``:
broken videos, resampling, shots, segmenting, (high resolution), affine, sync, quality, publish
(into ``high_visual_quality/``). A rerun resumes: finished items are skipped; interrupted ones, and
those whose input or settings changed, are redone; what earlier runs made and this one no longer
does is moved to ``OUT/superseded/`` (see :mod:`preprocess.runner`). Ctrl-C or SIGTERM stops the
run cleanly (exit 130 or 143; finished items are kept). The inputs are only read, and only the
pipeline's own folders under ``OUT`` are written. ``OUT`` defaults to the input folder's parent,
like upstream's.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from latentsync.cli import ArgumentParser, made_folder, number, run_main
from latentsync.errors import ConfigError, LatentSyncError, error_line
from latentsync.media.formats import VIDEO_EXTENSIONS
from latentsync.metrics.model_files import default_path, require_model_files
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging
from latentsync.utils.files import TEMP_PREFIX, atomic_output, check_writable_folder
from preprocess import (
    align_faces,
    detect_shot,
    filter_high_resolution,
    filter_visual_quality,
    remove_broken_videos,
    resample_fps_hz,
    segment_videos,
    sync_av,
)
from preprocess.executors import LocalExecutor, RayExecutor
from preprocess.runner import (
    MANIFEST_DIR,
    STATE_DIR,
    SUPERSEDED_DIR,
    Item,
    Record,
    StepResult,
    Superseded,
    publish,
    record,
    remove_stale_temporaries,
    run_step,
)
from preprocess.settings import FPS, Settings

logger = logging.getLogger("preprocess")

FINAL_DIR = "high_visual_quality"


@dataclass(frozen=True)
class Step:
    name: str
    process: Callable
    gpu: bool = False  # runs models: per_gpu_num_workers per GPU
    options: tuple[str, ...] = ()  # the Settings fields that change its outputs (stored in each record)
    folder: str | None = None  # where it writes, under the output folder (None: it writes no files)
    in_process: bool = False  # too cheap for a worker pool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="python -m preprocess.data_processing_pipeline",
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input_dir", required=True, help="folder of raw videos (searched recursively; never modified)")
    p.add_argument("--output_dir", help="where step folders and manifests go (default: the input folder's parent)")
    p.add_argument("--temp_dir", help="working files (default: OUTPUT_DIR/.work)")
    p.add_argument("--resolution", type=number(int, 16, 4096, even=True), default=256,
                   help="side of the aligned face clips")
    p.add_argument("--total_num_workers", type=number(int, 1), default=os.cpu_count() or 1,
                   help="processes for the CPU steps")
    p.add_argument("--per_gpu_num_workers", type=number(int, 1), default=1, help="processes per GPU for the model steps")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--ray_address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--min_clip_seconds", type=number(float, 1 / FPS), default=5.0)
    p.add_argument("--max_clip_seconds", type=number(float, 1 / FPS), default=10.0)
    p.add_argument("--shot_threshold", type=number(float, 0, 255, above=True), default=27.0,
                   help="scenedetect content-detector threshold")
    p.add_argument("--filter_high_resolution", action="store_true", help="drop clips whose face is under RESOLUTION px")
    p.add_argument("--face_detector", default="mediapipe", choices=("auto", "insightface", "mediapipe"))
    p.add_argument("--max_face_lost", type=number(float, 0, 1), default=0.1,
                   help="share of frames a clip's face may be missed in")
    p.add_argument("--max_alignment_residual", type=number(float, 0, above=True), default=0.3,
                   help="landmark fit error (in brow distances) above which an alignment is implausible")
    p.add_argument("--skip_sync", action="store_true", help="no sync step (e.g. without the SyncNet model files)")
    p.add_argument("--sync_scorer", default="classic", choices=("classic", "stable"))
    p.add_argument("--syncnet_config", help="StableSyncNet config (--sync_scorer stable)")
    p.add_argument("--syncnet_ckpt", help="StableSyncNet checkpoint (--sync_scorer stable)")
    p.add_argument("--classic_syncnet_path", default=default_path("syncnet_v2.model"))
    p.add_argument("--s3fd_path", default=default_path("sfd_face.pth"))
    p.add_argument("--sync_conf_threshold", type=number(float), default=3.0,
                   help="minimum sync confidence (3 suits the classic scorer; StableSyncNet distances are smaller)")
    p.add_argument("--max_offset", type=number(int, 0, Settings.vshift), default=6,
                   help="frames; clips further out of sync are dropped")
    p.add_argument("--skip_quality", action="store_true", help="no hyperIQA step (e.g. without its model file)")
    p.add_argument("--quality_model_path", default=default_path("koniq_pretrained.pkl"))
    p.add_argument("--quality_threshold", type=number(float, 0, 100), default=40.0)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.max_clip_seconds < args.min_clip_seconds:
        p.error(f"--max_clip_seconds ({args.max_clip_seconds:g}) must be >= --min_clip_seconds ({args.min_clip_seconds:g})")
    return args


def check_model_files(args: argparse.Namespace) -> None:
    """Stop before any work when a model step lacks its files, naming all of them and how to run without them."""
    if not args.skip_sync and args.sync_scorer == "stable":
        absent = [f"--{flag} {getattr(args, flag)!r}" for flag in ("syncnet_config", "syncnet_ckpt")
                  if not getattr(args, flag) or not os.path.isfile(getattr(args, flag))]
        if absent:
            raise ConfigError(f"--sync_scorer stable needs --syncnet_config and --syncnet_ckpt files; not files: "
                              f"{', '.join(absent)}; or pass --skip_sync")
    sync = [args.classic_syncnet_path, args.s3fd_path] if not args.skip_sync and args.sync_scorer == "classic" else []
    quality = [] if args.skip_quality else [args.quality_model_path]
    missing = {flag: [path for path in paths if not os.path.isfile(path)]
               for flag, paths in (("--skip_sync", sync), ("--skip_quality", quality))}
    flags = [flag for flag, paths in missing.items() if paths]
    require_model_files(missing["--skip_sync"] + missing["--skip_quality"],
                        f"; or pass {' '.join(flags)} to run without {'that step' if len(flags) == 1 else 'those steps'}")


def build_steps(args: argparse.Namespace, settings: Settings) -> list[Step]:
    steps = [
        Step("remove_broken_videos", remove_broken_videos.check_video),
        Step("resample_fps_hz", resample_fps_hz.resample, folder=resample_fps_hz.FOLDER),
        Step("detect_shot", detect_shot.detect_shots, options=("shot_threshold",)),
        Step("segment_videos", segment_videos.segment, options=("min_clip_seconds", "max_clip_seconds"),
             folder=segment_videos.FOLDER),
    ]
    if args.filter_high_resolution:
        steps.append(Step("filter_high_resolution", filter_high_resolution.filter_resolution, gpu=True,
                          options=("resolution", "face_detector")))
    # The alignment step keeps the name of existing runs' manifests and state.
    steps.append(Step("affine_transform", align_faces.align_clip, gpu=True, folder=align_faces.FOLDER,
                      options=("resolution", "face_detector", "max_face_lost", "max_alignment_residual", "check_every")))
    if not args.skip_sync:
        steps.append(Step("sync_av", sync_av.sync_clip, gpu=True, folder=sync_av.folder(settings), options=(
            "sync_scorer", "syncnet_config", "syncnet_ckpt", "classic_syncnet_path", "s3fd_path",
            "sync_conf_threshold", "max_offset", "vshift")))
    if not args.skip_quality:
        steps.append(Step("filter_visual_quality", filter_visual_quality.filter_quality, gpu=True,
                          options=("quality_model_path", "quality_threshold")))
    steps.append(Step("publish", publish_clip, folder=FINAL_DIR, in_process=True))
    return steps


def publish_clip(item: Item, settings) -> list[Record]:
    """The last step: link (or copy) a surviving clip into ``high_visual_quality/`` under its key."""
    target = os.path.join(settings.output_dir, FINAL_DIR, item.key)
    publish(item.source, target)
    duration = item.data.get("duration_out")
    return [record(item.source, target, True, duration_in=duration, duration_out=duration)]


def owned_folders(output_dir: str) -> list[str]:
    """The folders under the output folder that only this pipeline writes (a stale temporary file is looked for there only)."""
    names = [resample_fps_hz.FOLDER, segment_videos.FOLDER, align_faces.FOLDER, FINAL_DIR, MANIFEST_DIR,
             STATE_DIR, SUPERSEDED_DIR]
    if os.path.isdir(output_dir):
        names += [name for name in os.listdir(output_dir) if name.startswith(sync_av.FOLDER_PREFIX)]
    return [os.path.join(output_dir, name) for name in names]


def find_videos(input_dir: str) -> list[Item]:
    """Every video under ``input_dir``, keyed by its path relative to it, in sorted order."""
    items = []
    for folder, dirs, files in os.walk(input_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                path = os.path.join(folder, name)
                items.append(Item(os.path.relpath(path, input_dir), path))
    return items


def next_items(step: Step, items: list[Item], result: StepResult, settings: Settings) -> list[Item]:
    """The kept outputs of a step as the next step's items; files the step wrote are keyed under their folder."""
    by_source = collections.defaultdict(list)
    for line in result.records:
        by_source[line["source"]].append(line)
    out = []
    for item in items:
        for line in by_source.get(item.source, []):
            if line["kept"]:
                key = item.key if line["output"] == item.source else _key_of(line["output"], settings)
                out.append(Item(key, line["output"], line))
    return out


def _key_of(path: str, settings: Settings) -> str:
    """``<output_dir>/<step folder>/<key>`` -> key."""
    relative = os.path.relpath(path, settings.output_dir)
    return relative.split(os.sep, 1)[1]


def foreign_files(folder: str, ours: set[str]) -> list[str]:
    """Files in ``folder`` (at any depth) that this run did not put there (left alone, but counted)."""
    found = []
    for sub, _, files in os.walk(folder):
        found += [os.path.join(sub, name) for name in files
                  if os.path.join(sub, name) not in ours and not name.startswith(TEMP_PREFIX)]
    return sorted(found)


def summary_table(results: list[tuple[str, StepResult]], finals: int, hours_in: float, hours_out: float) -> str:
    """Counts per step and reason, processing seconds per item and per final clip, footage in and out."""
    lines = [f"{'step':<24} {'items':>6} {'kept':>6} {'dropped':>8} {'s/item':>7} {'s/clip':>7}  reasons"]
    for name, result in results:
        kept = sum(line["kept"] for line in result.records)
        seconds = sum(line.get("seconds") or 0 for line in result.records)
        items = len({line["source"] for line in result.records})
        reasons = collections.Counter(line["reason"] for line in result.records if not line["kept"])
        listed = "; ".join(f"{reason} ({count})" for reason, count in sorted(reasons.items()))
        failed = f"; failed, retried by a rerun ({len(result.failed)})" if result.failed else ""
        lines.append(
            f"{name:<24} {len(result.records):>6} {kept:>6} {len(result.records) - kept:>8} "
            f"{seconds / max(1, items):>7.2f} {seconds / max(1, finals):>7.2f}  {listed}{failed}"
        )
    lines.append(f"final clips: {finals}; footage in {hours_in:.4f} h, out {hours_out:.4f} h")
    return "\n".join(lines)


def check_folders(args: argparse.Namespace) -> tuple[str, str, str]:
    """Input, output and working folders, absolute; refused before any work when they cannot be used."""
    input_dir = os.path.abspath(args.input_dir)
    if not os.path.isdir(input_dir):
        what = "is a file, not a folder" if os.path.isfile(input_dir) else "does not exist"
        raise ConfigError(f"--input_dir {args.input_dir!r} {what}")
    output_dir = os.path.abspath(args.output_dir or os.path.dirname(input_dir))
    temp_dir = os.path.abspath(args.temp_dir or os.path.join(output_dir, ".work"))
    for flag, folder in (("--output_dir", output_dir), ("--temp_dir", temp_dir)):
        if os.path.commonpath([folder, input_dir]) == input_dir:
            raise ConfigError(f"{flag} {folder!r} lies inside --input_dir, which is only read; choose a folder outside it")
        check_writable_folder(folder, flag)
    return input_dir, output_dir, temp_dir


def run(args: argparse.Namespace) -> int:
    input_dir, output_dir, temp_dir = check_folders(args)
    check_model_files(args)
    try:
        device = pick_device(args.device)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    items = find_videos(input_dir)
    if not items:
        raise ConfigError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under --input_dir {args.input_dir!r}")
    settings = Settings(
        output_dir=output_dir, temp_dir=temp_dir, resolution=args.resolution,
        min_clip_seconds=args.min_clip_seconds, max_clip_seconds=args.max_clip_seconds,
        shot_threshold=args.shot_threshold, face_detector=args.face_detector, max_face_lost=args.max_face_lost,
        max_alignment_residual=args.max_alignment_residual, sync_scorer=args.sync_scorer,
        syncnet_config=args.syncnet_config or "", syncnet_ckpt=args.syncnet_ckpt or "",
        classic_syncnet_path=args.classic_syncnet_path, s3fd_path=args.s3fd_path,
        sync_conf_threshold=args.sync_conf_threshold, max_offset=args.max_offset,
        quality_model_path=args.quality_model_path, quality_threshold=args.quality_threshold, device=str(device),
    )
    removed = remove_stale_temporaries(owned_folders(output_dir), temp_dir)
    if removed:
        logger.info("removed %d temporary files left by a killed run", len(removed))
    with made_folder(temp_dir):
        return _run_steps(args, items, settings, device)


def _run_steps(args: argparse.Namespace, items: list[Item], settings: Settings, device: torch.device) -> int:
    output_dir = settings.output_dir
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    gpu_workers = args.per_gpu_num_workers * gpus if gpus else args.total_num_workers
    executor = RayExecutor(args.ray_address, gpus) if args.executor == "ray" else LocalExecutor()
    superseded = Superseded(output_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    start = time.perf_counter()
    logger.info("%d videos under %s; output in %s", len(items), args.input_dir, output_dir)
    results: list[tuple[str, StepResult]] = []
    try:
        for step in build_steps(args, settings):
            workers = 1 if step.in_process else gpu_workers if step.gpu else args.total_num_workers
            run_executor = LocalExecutor() if step.in_process else executor
            result = run_step(step.name, step.process, items, settings, output_dir, run_executor, workers, step.gpu,
                              step.options, step.folder, superseded)
            results.append((step.name, result))
            logger.info("%s: %d items (%d run now) in %.1f s", step.name, len(items), result.processed, result.seconds)
            items = next_items(step, items, result, settings)
    finally:
        executor.close()
    finals = {item.source for item in items}  # the publish step's outputs
    hours_in = sum(line.get("duration_in") or 0 for line in results[0][1].records) / 3600
    hours_out = sum(item.data.get("duration_out") or 0 for item in items) / 3600
    table = summary_table(results, len(finals), hours_in, hours_out)
    videos, minutes = len(results[0][1].records), (time.perf_counter() - start) / 60
    if all(result.processed == result.items for _, result in results):  # a fresh run, not a resumed one
        table += f"\nthroughput: {videos} videos in {minutes:.2f} min = {videos / minutes:.1f} videos/minute"
    table += _notes(superseded, foreign_files(os.path.join(output_dir, FINAL_DIR), finals), output_dir)
    with atomic_output(os.path.join(output_dir, MANIFEST_DIR, "summary.txt")) as tmp, open(tmp, "w") as f:
        f.write(table + "\n")
    print(table)
    failed = sum(len(result.failed) for _, result in results)
    if failed:
        print(f"error: {failed} items failed unexpectedly (see the log); a rerun retries them", file=sys.stderr)
        return 1
    return 0


def _notes(superseded: Superseded, foreign: list[str], output_dir: str) -> str:
    """Summary lines for files in the output that are not this run's current set."""
    notes = ""
    if superseded.moved:
        finals = sum(path.startswith(FINAL_DIR + os.sep) for path in superseded.moved)
        counts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in
                  ((finals, "final clip"), (len(superseded.moved) - finals, "intermediate file")) if n]
        with atomic_output(os.path.join(superseded.root, "moved.txt")) as tmp, open(tmp, "w") as f:
            f.write("\n".join(superseded.moved) + "\n")
        notes += (f"\nsuperseded: {' and '.join(counts)} of earlier runs that this run no longer makes (source gone, "
                  f"dropped now, or a setting changed): moved to {os.path.relpath(superseded.root, output_dir)}/ "
                  f"(listed in moved.txt there)")
        logger.warning("moved %d superseded files to %s", len(superseded.moved), superseded.root)
    if foreign:
        files = f"{len(foreign)} file{'s' if len(foreign) != 1 else ''}"
        notes += (f"\nnot ours: {FINAL_DIR}/ holds {files} this pipeline did not make (left as is): "
                  f"{', '.join(os.path.relpath(path, output_dir) for path in foreign[:5])}"
                  f"{' ...' if len(foreign) > 5 else ''}")
    return notes


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = parse_args(argv)
        configure_logging(args.verbose)
        return run(args)

    return run_main(body, "finished items are kept and a rerun does the rest", errors=(LatentSyncError,),
                    line=error_line)


if __name__ == "__main__":
    sys.exit(main())

"""Raw talking-head videos in, aligned 25 fps / 16 kHz training clips out (``high_visual_quality/``).

    python -m preprocess.data_processing_pipeline --input_dir RAW [--output_dir OUT] [options]

Steps, each over the previous step's kept items, each with a manifest in ``OUT/manifests/``:
broken videos, resampling, shots, segmenting, (high resolution), affine, sync, quality. A rerun
resumes: finished items are skipped, interrupted ones redone (see :mod:`preprocess.runner`).
The inputs are only read. ``OUT`` defaults to the input folder's parent, like upstream's.
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

from latentsync.errors import LatentSyncError
from latentsync.metrics.model_files import default_path, require_model_file
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging
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
from latentsync.utils.files import atomic_output
from preprocess.runner import (
    Item,
    LocalExecutor,
    RayExecutor,
    StepResult,
    publish,
    remove_stale_temporaries,
    run_step,
)
from preprocess.settings import Settings

logger = logging.getLogger("preprocess")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
FINAL_DIR = "high_visual_quality"


@dataclass(frozen=True)
class Step:
    name: str
    process: Callable
    gpu: bool = False  # runs models: per_gpu_num_workers per GPU


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--input_dir", required=True, help="folder of raw videos (searched recursively; never modified)")
    p.add_argument("--output_dir", help="where step folders and manifests go (default: the input folder's parent)")
    p.add_argument("--temp_dir", help="working files (default: OUTPUT_DIR/.work)")
    p.add_argument("--resolution", type=int, default=256, help="side of the aligned face clips")
    p.add_argument("--total_num_workers", type=int, default=os.cpu_count() or 1, help="processes for the CPU steps")
    p.add_argument("--per_gpu_num_workers", type=int, default=1, help="processes per GPU for the model steps")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--ray_address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--min_clip_seconds", type=float, default=5.0)
    p.add_argument("--max_clip_seconds", type=float, default=10.0)
    p.add_argument("--shot_threshold", type=float, default=27.0, help="scenedetect content-detector threshold")
    p.add_argument("--filter_high_resolution", action="store_true", help="drop clips whose face is under RESOLUTION px")
    p.add_argument("--face_detector", default="mediapipe", choices=("auto", "insightface", "mediapipe"))
    p.add_argument("--max_face_lost", type=float, default=0.1, help="share of frames a clip's face may be missed in")
    p.add_argument("--max_alignment_residual", type=float, default=0.3,
                   help="landmark fit error (in brow distances) above which an alignment is implausible")
    p.add_argument("--skip_sync", action="store_true", help="no sync step (e.g. without the SyncNet model files)")
    p.add_argument("--sync_scorer", default="classic", choices=("classic", "stable"))
    p.add_argument("--syncnet_config", help="StableSyncNet config (--sync_scorer stable)")
    p.add_argument("--syncnet_ckpt", help="StableSyncNet checkpoint (--sync_scorer stable)")
    p.add_argument("--classic_syncnet_path", default=default_path("syncnet_v2.model"))
    p.add_argument("--s3fd_path", default=default_path("sfd_face.pth"))
    p.add_argument("--sync_conf_threshold", type=float, default=3.0,
                   help="minimum sync confidence (3 suits the classic scorer; StableSyncNet distances are smaller)")
    p.add_argument("--max_offset", type=int, default=6, help="frames; clips further out of sync are dropped")
    p.add_argument("--skip_quality", action="store_true", help="no hyperIQA step (e.g. without its model file)")
    p.add_argument("--quality_model_path", default=default_path("koniq_pretrained.pkl"))
    p.add_argument("--quality_threshold", type=float, default=40.0)
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def check_model_files(args: argparse.Namespace) -> None:
    """Stop before any work when a model step lacks its files (the error names the fetch command)."""
    if not args.skip_sync:
        if args.sync_scorer == "stable":
            for flag in ("syncnet_config", "syncnet_ckpt"):
                path = getattr(args, flag)
                if not path or not os.path.isfile(path):
                    raise LatentSyncError(
                        f"--sync_scorer stable needs --{flag} (a file; got {path!r}); or pass --skip_sync"
                    )
        else:
            require_model_file(args.classic_syncnet_path)
            require_model_file(args.s3fd_path)
    if not args.skip_quality:
        require_model_file(args.quality_model_path)


def build_steps(args: argparse.Namespace) -> list[Step]:
    steps = [
        Step("remove_broken_videos", remove_broken_videos.check_video),
        Step("resample_fps_hz", resample_fps_hz.resample),
        Step("detect_shot", detect_shot.detect_shots),
        Step("segment_videos", segment_videos.segment),
    ]
    if args.filter_high_resolution:
        steps.append(Step("filter_high_resolution", filter_high_resolution.filter_resolution, gpu=True))
    steps.append(Step("affine_transform", align_faces.align_clip, gpu=True))  # the name of existing runs' manifests
    if not args.skip_sync:
        steps.append(Step("sync_av", sync_av.sync_clip, gpu=True))
    if not args.skip_quality:
        steps.append(Step("filter_visual_quality", filter_visual_quality.filter_quality, gpu=True))
    return steps


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


def publish_final(items: list[Item], settings: Settings) -> list[str]:
    """Link (or copy) the surviving clips into ``high_visual_quality/`` under their keys."""
    finals = []
    for item in items:
        target = os.path.join(settings.output_dir, FINAL_DIR, item.key)
        if not os.path.isfile(target):
            publish(item.source, target)
        finals.append(target)
    return finals


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


def run(args: argparse.Namespace) -> int:
    input_dir = os.path.abspath(args.input_dir)
    if not os.path.isdir(input_dir):
        raise LatentSyncError(f"--input_dir is not a folder: {args.input_dir!r}")
    output_dir = os.path.abspath(args.output_dir or os.path.dirname(input_dir))
    if os.path.commonpath([output_dir, input_dir]) == input_dir:
        raise LatentSyncError(f"--output_dir {output_dir!r} lies inside --input_dir; choose a folder outside it")
    check_model_files(args)
    try:
        device = pick_device(args.device)
    except ValueError as err:
        raise LatentSyncError(str(err)) from err
    temp_dir = os.path.abspath(args.temp_dir or os.path.join(output_dir, ".work"))
    os.makedirs(temp_dir, exist_ok=True)
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
    removed = remove_stale_temporaries(output_dir, temp_dir)
    if removed:
        logger.info("removed %d temporary files left by an interrupted run", removed)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    gpu_workers = args.per_gpu_num_workers * gpus if gpus else args.total_num_workers
    executor = RayExecutor(args.ray_address, gpus) if args.executor == "ray" else LocalExecutor()
    items = find_videos(input_dir)
    start = time.perf_counter()
    logger.info("%d videos under %s; output in %s", len(items), input_dir, output_dir)
    results: list[tuple[str, StepResult]] = []
    try:
        for step in build_steps(args):
            workers = gpu_workers if step.gpu else args.total_num_workers
            result = run_step(step.name, step.process, items, settings, output_dir, executor, workers, step.gpu)
            results.append((step.name, result))
            logger.info("%s: %d items (%d run now) in %.1f s", step.name, len(items), result.processed, result.seconds)
            items = next_items(step, items, result, settings)
    finally:
        executor.close()
    finals = publish_final(items, settings)
    hours_in = sum(line.get("duration_in") or 0 for line in results[0][1].records) / 3600
    hours_out = sum(item.data.get("duration_out") or 0 for item in items) / 3600
    table = summary_table(results, len(finals), hours_in, hours_out)
    videos, minutes = len(results[0][1].records), (time.perf_counter() - start) / 60
    if all(result.processed == result.items for _, result in results):  # a fresh run, not a resumed one
        table += f"\nthroughput: {videos} videos in {minutes:.2f} min = {videos / minutes:.1f} videos/minute"
    with atomic_output(os.path.join(output_dir, "manifests", "summary.txt")) as tmp, open(tmp, "w") as f:
        f.write(table + "\n")
    print(table)
    failed = sum(len(result.failed) for _, result in results)
    if failed:
        print(f"error: {failed} items failed unexpectedly (see the log); a rerun retries them", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run(args)
    except LatentSyncError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

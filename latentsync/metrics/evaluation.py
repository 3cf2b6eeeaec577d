"""Folder-level evaluation: per-video rows (a failed video is a row with its reason) and set scores.

Every function streams: videos are read frame by frame, one at a time, and set statistics are
running sums, so memory does not grow with the number or length of the videos.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from latentsync.cli import ArgumentParser, number
from latentsync.errors import LatentSyncError, MediaError
from latentsync.metrics.face_tracks import TrackSettings, track_settings
from latentsync.metrics.model_files import default_path, require_model_files
from latentsync.metrics.fid import FID_DIM, inception_features
from latentsync.metrics.frechet import FeatureStats, stats_distance
from latentsync.metrics.fvd import I3D_DIM, FaceCropper, face_clip, i3d_features
from latentsync.metrics.image_quality import video_quality
from latentsync.metrics.image_similarity import psnr, ssim
from latentsync.metrics.report import Row
from latentsync.metrics.sync_confidence import SyncScorer, score_video
from latentsync.metrics.sync_routes import DEFAULT_PROTOCOL as DEFAULT_SYNC_PROTOCOL, PROTOCOLS as SYNC_PROTOCOLS
from latentsync.models.hyperiqa import HyperNet
from latentsync.models.s3fd import S3FD, S3FDDetector
from latentsync.models.syncnet_classic import ClassicSyncNet
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.media.formats import VIDEO_EXTENSIONS
from latentsync.media.reader import VideoReader

logger = logging.getLogger(__name__)

# Failures that belong to one video (unreadable, no face, too short): recorded, the run goes on.
VIDEO_FAILURES = (LatentSyncError, ValueError, cv2.error)
SYNC_COLUMNS = ["video", "lse_c", "lse_d", "offset", "tracks", "error"]


def list_videos(path: str | os.PathLike) -> list[str]:
    """``path`` itself if it is a file, else the videos directly inside the folder, sorted by name."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise MediaError(f"no such video or folder: {path!r}")
    videos = [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.lower().endswith(VIDEO_EXTENSIONS)]
    if not videos:
        raise MediaError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {path!r}")
    return videos


def default_batch_size(device: torch.device) -> int:
    """Windows per SyncNet batch: larger where memory is larger."""
    return {"cuda": 100, "mps": 40}.get(device.type, 20)


def add_input_arguments(parser: argparse.ArgumentParser, video_help: str = "one video") -> None:
    """--video_path | --videos_dir, --device and --no_progress."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_path", help=video_help)
    source.add_argument("--videos_dir", help="a folder of videos")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --no_progress."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: cuda, then mps, then cpu")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """Model files, batch size and tracking flags of the SyncNet metric."""
    group = parser.add_argument_group("SyncNet metric")
    group.add_argument("--syncnet_path", default=default_path("syncnet_v2.model"), help="classic SyncNet weights")
    group.add_argument("--s3fd_path", default=default_path("sfd_face.pth"), help="S3FD face detector weights")
    group.add_argument("--batch_size", type=number(int, 1), help="5-frame windows per SyncNet batch (default: by device)")
    group.add_argument("--vshift", type=number(int, 1), default=15, help="offsets searched either side of zero, in frames")
    group.add_argument("--sync_protocol", default=DEFAULT_SYNC_PROTOCOL, choices=SYNC_PROTOCOLS,
                       help="upstream: the crops and audio take LatentSync's lossy media route (mp4v crop video, "
                            "JPEG frames), numbers comparable with published ones; clean: decoded crops scored "
                            "directly (default: %(default)s)")
    TrackSettings.add_arguments(parser)


def build_sync(args: argparse.Namespace, device: torch.device) -> tuple[SyncScorer, S3FDDetector, TrackSettings]:
    """SyncNet scorer, S3FD detector and tracking settings from :func:`add_sync_arguments` flags."""
    require_model_files([args.syncnet_path, args.s3fd_path])
    syncnet = ClassicSyncNet.from_file(args.syncnet_path, device)
    s3fd = S3FD.from_file(args.s3fd_path, device)
    scorer = SyncScorer(syncnet, device, args.batch_size or default_batch_size(device), args.vshift)
    return scorer, S3FDDetector(s3fd, device), track_settings(args)


def failure(video: str, err: BaseException) -> Row:
    reason = " ".join(str(err).split()) or type(err).__name__
    logger.warning("%s: %s", video, reason)
    return {"video": video, "error": reason}


def sync_rows(
    videos: Sequence[str], scorer: SyncScorer, detector: S3FDDetector, settings: TrackSettings, progress: bool = True,
    protocol: str = DEFAULT_SYNC_PROTOCOL,
) -> Iterator[Row]:
    """LSE-C, LSE-D, offset and track count of each video, scored under the sync ``protocol``."""
    for video in tqdm(videos, desc="sync confidence", unit="video", disable=not progress):
        try:
            result = score_video(video, scorer, detector, settings, protocol=protocol)
        except VIDEO_FAILURES as err:
            yield failure(video, err)
            continue
        yield {"video": video, "lse_c": result.confidence, "lse_d": result.min_dist, "offset": result.offset,
               "tracks": len(result.tracks), "error": ""}


def quality_rows(videos: Sequence[str], model: HyperNet, progress: bool = True) -> Iterator[Row]:
    """hyperIQA score of each video (first, middle and last frame)."""
    for video in tqdm(videos, desc="hyperIQA", unit="video", disable=not progress):
        try:
            yield {"video": video, "hyperiqa": video_quality(model, video), "error": ""}
        except VIDEO_FAILURES as err:
            yield failure(video, err)


def video_fvd_stats(
    videos: Sequence[str], i3d: torch.nn.Module, protocol: str, cropper: FaceCropper | None,
    errors: dict[str, str], progress: bool = True, desc: str = "FVD",
) -> FeatureStats:
    """I3D feature statistics of one clip per video; failures go to ``errors``."""
    stats = FeatureStats(I3D_DIM)
    for video in tqdm(videos, desc=desc, unit="video", disable=not progress):
        try:
            clip = face_clip(video, cropper)
        except VIDEO_FAILURES as err:
            errors[video] = failure(video, err)["error"]
            continue
        stats.update(i3d_features(i3d, torch.from_numpy(clip)[None], protocol))
    return stats


def frame_fid_stats(
    videos: Sequence[str], inception: torch.nn.Module, stride: int, batch_size: int,
    errors: dict[str, str], progress: bool = True, desc: str = "FID",
) -> FeatureStats:
    """Inception feature statistics of every ``stride``-th frame of each video (a video counts whole or not at all)."""
    stats = FeatureStats(FID_DIM)
    for video in tqdm(videos, desc=desc, unit="video", disable=not progress):
        try:
            feats, batch = [], []
            for index, frame in enumerate(VideoReader(video)):
                if index % stride == 0:
                    batch.append(frame)
                if len(batch) == batch_size:
                    feats.append(inception_features(inception, np.stack(batch)))
                    batch = []
            if batch:
                feats.append(inception_features(inception, np.stack(batch)))
        except VIDEO_FAILURES as err:
            errors[video] = failure(video, err)["error"]
            continue
        stats.update(np.concatenate(feats))
    return stats


def similarity_row(real: str, fake: str, stride: int = 1) -> Row:
    """Mean SSIM and PSNR over paired frames (every ``stride``-th, up to the shorter video); fake frames are resized to the real size."""
    ssims, psnrs = [], []
    for index, (a, b) in enumerate(zip(VideoReader(real), VideoReader(fake))):
        if index % stride:
            continue
        if b.shape != a.shape:
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        ssims.append(ssim(a, b))
        psnrs.append(psnr(a, b))
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"ssim": float(np.mean(ssims)), "psnr": float(np.mean(finite)) if finite else float("inf")}


def set_distance(a: FeatureStats, b: FeatureStats, what: str) -> float | None:
    """Fréchet distance of two sets, or None (logged) when a set has fewer than two samples."""
    if a.count < 2 or b.count < 2:
        logger.warning("%s needs at least 2 samples per set, got %d and %d", what, a.count, b.count)
        return None
    return stats_distance(a, b)


def pair_by_name(real_videos: Sequence[str], fake_videos: Sequence[str]) -> list[tuple[str, str]]:
    """(real, fake) pairs with the same file stem; a fake named ``stem__audio.mp4`` pairs with ``stem``."""
    real_by_stem = {os.path.splitext(os.path.basename(v))[0]: v for v in real_videos}
    pairs = []
    for fake in fake_videos:
        stem = os.path.splitext(os.path.basename(fake))[0]
        real = real_by_stem.get(stem) or real_by_stem.get(stem.split("__")[0])
        if real:
            pairs.append((real, fake))
    return pairs


def similarity_rows(pairs: Sequence[tuple[str, str]], stride: int, progress: bool = True) -> Iterator[Row]:
    for real, fake in tqdm(pairs, desc="SSIM/PSNR", unit="video", disable=not progress):
        try:
            yield {"video": fake, "real": real, **similarity_row(real, fake, stride), "error": ""}
        except VIDEO_FAILURES as err:
            yield {**failure(fake, err), "real": real}


def merge_rows(videos: Sequence[str], *row_sets: Sequence[Row]) -> list[Row]:
    """One row per video with every metric; errors are joined."""
    merged = {video: {"video": video, "error": ""} for video in videos}
    for rows in row_sets:
        for row in rows:
            target = merged.setdefault(row["video"], {"video": row["video"], "error": ""})
            for key, value in row.items():
                if key == "error":
                    if value and value not in target["error"]:
                        target["error"] = "; ".join(filter(None, [target["error"], value]))
                elif key != "video":
                    target[key] = value
    return list(merged.values())



def set_scores(
    real: Sequence[str], fake: Sequence[str], i3d: torch.nn.Module, inception: torch.nn.Module | None,
    protocol: str, cropper: FaceCropper | None, frame_stride: int, batch_size: int,
    errors: dict[str, str], progress: bool = True,
) -> Row:
    """FVD (and FID when ``inception`` is given) of the fake set against the real set."""
    logger.info("FVD protocol: %s", protocol)
    scores: Row = {
        "fvd": set_distance(video_fvd_stats(real, i3d, protocol, cropper, errors, progress, "FVD real"),
                            video_fvd_stats(fake, i3d, protocol, cropper, errors, progress, "FVD fake"), "FVD"),
    }
    if inception is not None:
        scores["fid"] = set_distance(
            frame_fid_stats(real, inception, frame_stride, batch_size, errors, progress, "FID real"),
            frame_fid_stats(fake, inception, frame_stride, batch_size, errors, progress, "FID fake"), "FID")
    return scores


def cli_parser(prog: str, description: str | None, **kwargs) -> argparse.ArgumentParser:
    """An evaluation CLI's parser: its module docstring as the description, line breaks kept; a usage
    mistake is a ConfigError (one ``error:`` line)."""
    return ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                          **kwargs)


def device_and_videos(args: argparse.Namespace) -> tuple[torch.device, list[str]]:
    """The device and the videos named by :func:`add_input_arguments` flags."""
    return pick_device(args.device), list_videos(args.video_path or args.videos_dir)

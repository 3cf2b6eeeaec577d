"""The classic-SyncNet confidence (LSE-C) of training's validation videos, when the scorer is there.

The evaluation scorer (:mod:`latentsync.metrics.sync_confidence`, with the classic SyncNet and
the S3FD face detector) is optional for training: without its model files the run goes on
without this metric, and says so once.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch

logger = logging.getLogger(__name__)

VideoScore = Callable[[str], float]


def sync_confidence_available(syncnet_path: str, s3fd_path: str) -> bool:
    """Whether both of the scorer's model files are present (the same answer on every rank)."""
    missing = [path for path in (syncnet_path, s3fd_path) if not (path and os.path.isfile(path))]
    if missing:
        logger.info("validation without sync confidence: %s not found (bash setup_env.sh --with-training)",
                    ", ".join(missing) or "no model path configured")
        return False
    return True


def load_sync_confidence(syncnet_path: str, s3fd_path: str, device: torch.device) -> VideoScore:
    """A function giving a video's LSE-C (mean over its face tracks) against its own audio track."""
    from latentsync.metrics.sync_confidence import SyncScorer, score_video
    from latentsync.models.s3fd import S3FD, S3FDDetector
    from latentsync.models.syncnet_classic import ClassicSyncNet

    scorer = SyncScorer(ClassicSyncNet.from_file(syncnet_path, device), device)
    detector = S3FDDetector(S3FD.from_file(s3fd_path, device), device)
    return lambda video_path: float(score_video(video_path, scorer, detector).confidence)

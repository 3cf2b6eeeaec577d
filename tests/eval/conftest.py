"""Fixture media and model files for the evaluation CLIs (made once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.synthetic_clips import make_clip
from tools.eval_models import write_auxiliary

CLIP_SECONDS = 1.6  # 40 frames at 25 fps
CLIP_SIZE = 256
# The golden-procedure S3FD scores every box about 0.5; at 0.52 it keeps a stable 266 px and a
# 2020 px box on the synthetic clips: two face tracks per video (min_track lowered for 40 frames).
SYNC_FLAGS = ["--conf_threshold", "0.52", "--min_track", "20", "--device", "cpu", "--no_progress"]


@pytest.fixture(scope="session")
def auxiliary(tmp_path_factory) -> Path:
    """checkpoints/auxiliary layout: official files with golden weights, a tiny I3D, the FID Inception."""
    return write_auxiliary(tmp_path_factory.mktemp("auxiliary"))


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """A folder of two synthetic talking-head clips and one corrupt file."""
    folder = tmp_path_factory.mktemp("clips")
    for seed in (1, 2):
        make_clip(folder / f"clip{seed}.mp4", CLIP_SECONDS, seed, size=CLIP_SIZE)
    (folder / "corrupt.mp4").write_bytes(b"this is not a video")
    return folder


def sync_model_flags(auxiliary: Path) -> list[str]:
    return ["--syncnet_path", str(auxiliary / "syncnet_v2.model"), "--s3fd_path", str(auxiliary / "sfd_face.pth")]


def noisy_copy(src: Path, dst: Path, sigma: float, seed: int = 0) -> Path:
    """``src`` with Gaussian pixel noise (and its audio), written to ``dst``."""
    from latentsync.media.mux import mux_audio
    from latentsync.media.reader import VideoReader
    from latentsync.media.writer import VideoWriter

    reader = VideoReader(src)
    rng = np.random.default_rng(seed)
    silent = dst.with_suffix(".silent.mp4")
    with VideoWriter(silent, 25, reader.width, reader.height) as writer:
        for frame in reader:
            writer.write(np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8))
    mux_audio(silent, src, dst)
    silent.unlink()
    return dst

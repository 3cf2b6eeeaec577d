"""Tiny random-weight models for CPU pipeline tests (builders in ``tools/tiny_models.py``).

The tests' Whisper checkpoint is the golden random one, so audio features match the golden vectors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.tiny_models import (  # noqa: F401  (re-exported for the tests)
    TINY_RESOLUTION,
    WHISPER_WIDTH,
    TinyModels,
    tiny_unet_config,
    write_unet,
    write_vae,
)
from tools.tiny_models import write_all as _write_all
from tools.tiny_models import write_whisper as _write_whisper

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden"
GOLDEN_WHISPER = GOLDEN_DIR / "whisper_tiny_random.pt"


def write_whisper(folder: Path) -> Path:
    """The golden random whisper checkpoint (dims + model_state_dict, fp16), width 64."""
    return _write_whisper(folder, GOLDEN_WHISPER)


def write_all(folder: Path, seed: int = 0) -> TinyModels:
    return _write_all(folder, seed, whisper_source=GOLDEN_WHISPER)


def tiny_pipeline(models: TinyModels):
    """The tiny models loaded on the CPU with the MediaPipe detector, progress bars off (close its detector after)."""
    from latentsync.pipelines.loading import load_pipeline

    pipeline = load_pipeline(models.unet_config, models.unet_ckpt, whisper_path=models.whisper, vae_path=models.vae,
                             device="cpu", face_detector="mediapipe")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """A tiny model set written once per test session (import this fixture where it is needed)."""
    return write_all(tmp_path_factory.mktemp("tiny_models"))

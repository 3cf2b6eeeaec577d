"""Shared fixtures: golden vectors copied from upstream runs, and determinism for CPU tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden"
REPO_ROOT = Path(__file__).resolve().parent.parent


def load_golden(name: str) -> dict:
    """Load ``tests/fixtures/golden/<name>`` (tensors, dicts and numbers only)."""
    return torch.load(GOLDEN_DIR / name, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def manifests() -> dict:
    with open(GOLDEN_DIR / "manifests.json") as f:
        return json.load(f)["models"]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Two cores shared by the tests' own threads and processes: extra intra-op threads only spin.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session", autouse=True)
def _project_root_cwd():
    # Configs name project-relative paths (configs/..., latentsync/face/mask.png).
    previous = os.getcwd()
    os.chdir(REPO_ROOT)
    yield
    os.chdir(previous)


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide singletons, so the next Accelerator of an in-process run starts afresh."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()

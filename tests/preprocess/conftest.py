"""The generated raw set and one pipeline run over it, shared by the preprocessing tests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time

import pytest

from preprocess import data_processing_pipeline as pipeline
from tests.preprocess.raw_set import make_raw_set

FINAL = {
    "cut_000.mp4", "cut_001.mp4", "fps30_stereo44k_mkv_000.mp4",
    "long25s_000.mp4", "long25s_001.mp4", "long25s_002.mp4",
}
OPTIONS = ["--skip_sync", "--skip_quality", "--device", "cpu", "--total_num_workers", "2"]


def fingerprint(folder: str) -> dict[str, str]:
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha1(f.read()).hexdigest()
    return out


def read_only(folder: str) -> None:
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP)
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


def manifest(output_dir: str, step: str) -> list[dict]:
    with open(os.path.join(output_dir, "manifests", f"{step}.jsonl")) as f:
        return [json.loads(line) for line in f]


def finals(output_dir: str) -> set[str]:
    folder = os.path.join(output_dir, pipeline.FINAL_DIR)
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> tuple[str, dict]:
    folder = str(tmp_path_factory.mktemp("raw") / "videos")
    expected = make_raw_set(folder)
    read_only(folder)  # the pipeline must work on a read-only input folder
    return folder, expected


@pytest.fixture(scope="session")
def processed(raw, tmp_path_factory) -> dict:
    folder, expected = raw
    before = fingerprint(folder)
    output_dir = str(tmp_path_factory.mktemp("processed"))
    start = time.perf_counter()
    code = pipeline.main(["--input_dir", folder, "--output_dir", output_dir, *OPTIONS])
    return {"code": code, "output_dir": output_dir, "before": before, "seconds": time.perf_counter() - start}



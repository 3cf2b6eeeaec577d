"""Killed with SIGKILL mid-run and rerun, or run on Ray: the same final set as the uninterrupted local run."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from latentsync.media.reader import VideoReader
from preprocess import data_processing_pipeline as pipeline
from tests.conftest import REPO_ROOT
from tests.preprocess.conftest import OPTIONS, finals, manifest

STEPS = ("remove_broken_videos", "resample_fps_hz", "detect_shot", "segment_videos", "affine_transform")


def subset(raw_folder: str, names: list[str], folder: str) -> str:
    os.makedirs(folder)
    for name in names:
        shutil.copyfile(os.path.join(raw_folder, name), os.path.join(folder, name))
    return folder


def comparable(output_dir: str, step: str, sources: set[str]) -> list[tuple]:
    """A step's manifest lines for ``sources`` without timings or absolute folders."""
    return sorted(
        (os.path.basename(line["source"]), os.path.basename(line["output"] or ""), line["kept"], line["reason"],
         str(line.get("shots") or line.get("frames") or ""))
        for line in manifest(output_dir, step)
        if os.path.basename(line["source"]).split("_0")[0].split(".")[0] in sources
    )


def assert_same_result(output_dir: str, reference_dir: str, names: list[str]) -> None:
    stems = {os.path.splitext(name)[0] for name in names}
    expected = {f for f in finals(reference_dir) if f.rsplit("_", 1)[0] in stems}
    assert finals(output_dir) == expected and expected
    for step in STEPS:
        assert comparable(output_dir, step, stems) == comparable(reference_dir, step, stems), step
    for name in expected:
        a = np.stack(list(VideoReader(os.path.join(output_dir, pipeline.FINAL_DIR, name))))
        b = np.stack(list(VideoReader(os.path.join(reference_dir, pipeline.FINAL_DIR, name))))
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 0.5, name


def assert_no_partial_files(output_dir: str) -> None:
    leftovers = glob.glob(os.path.join(output_dir, "**", ".tmp-*"), recursive=True, include_hidden=True)
    leftovers += glob.glob(os.path.join(output_dir, ".work", "*"))
    assert leftovers == []
    # Each step folder holds exactly the outputs its manifest keeps: no duplicates, no strays.
    for step, folder in (("resample_fps_hz", "resampled"), ("segment_videos", "segmented"),
                         ("affine_transform", "affine_transformed")):
        kept = {line["output"] for line in manifest(output_dir, step) if line["kept"]}
        on_disk = set(glob.glob(os.path.join(output_dir, folder, "**", "*.mp4"), recursive=True))
        assert on_disk == kept, step


def test_sigkill_mid_run_then_rerun_gives_the_same_set(raw, processed, tmp_path):
    names = ["cut.mp4", "no_audio.mp4"]
    folder = subset(raw[0], names, str(tmp_path / "raw"))
    output_dir = str(tmp_path / "out")
    one_process = [*OPTIONS, "--total_num_workers", "1"]  # the last flag wins; no pool to start: faster
    cmd = [sys.executable, "-m", "preprocess.data_processing_pipeline", "--input_dir", folder,
           "--output_dir", output_dir, *one_process]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(output_dir, ".state", "affine_transform")
    deadline = time.monotonic() + 600
    try:
        # Kill the whole process group once the affine step has finished one of the two clips.
        while not glob.glob(os.path.join(state, "*.json")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not os.path.isdir(os.path.join(output_dir, pipeline.FINAL_DIR))
    assert pipeline.main(["--input_dir", folder, "--output_dir", output_dir, *one_process]) == 0
    assert_same_result(output_dir, processed["output_dir"], names)
    assert_no_partial_files(output_dir)


@pytest.mark.slow
def test_ray_executor_gives_the_local_result(raw, processed, tmp_path):
    pytest.importorskip("ray")
    names = ["cut.mp4", "short3s.mp4", "corrupt.mp4"]
    folder = subset(raw[0], names, str(tmp_path / "raw"))
    output_dir = str(tmp_path / "out")
    # No address: the executor starts a local Ray instance for the run and stops it afterwards.
    assert pipeline.main(["--input_dir", folder, "--output_dir", output_dir, *OPTIONS, "--executor", "ray"]) == 0
    assert_same_result(output_dir, processed["output_dir"], names)
    assert_no_partial_files(output_dir)

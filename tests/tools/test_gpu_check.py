"""tools/gpu_check.py: the CPU dry run of every part (tiny models), the reporting of a part that fails or
hangs while the others still run, and the small adapters the GPU run depends on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tools.gpu_check import PARTS, Row, append_section, default_upstream, forced_fault
from tools.gpu_check_inference import error_line
from tools.gpu_check_training import fits
from tools.gpu_check_upstream import UPSTREAM_POINT_INDICES, frame_difference, landmarks_106

WRAPPER = REPO_ROOT / "tools" / "gpu_check.sh"
# The upstream comparison needs upstream's checkout (../shared/upstream/LatentSync); a clone without it
# reports that part as skipped, saying why.
HAVE_UPSTREAM = default_upstream() is not None


def run_check(
    tmp_path: Path, workdir: Path, *args: str, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, dict, str, str]:
    """The wrapper run from ``tmp_path`` (paths relative to it), results appended to a copy of RESULTS.md
    there: (process, rows JSON, the copy's text before, after)."""
    results = tmp_path / "RESULTS.md"
    original = (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text()
    results.write_text(original)
    rows = tmp_path / "rows.json"
    done = subprocess.run(
        ["bash", str(WRAPPER), "--device", "cpu", "--tiny", "--workdir", str(workdir), "--results", "RESULTS.md",
         "--json", "rows.json", *args],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=1800,
    )
    return done, json.loads(rows.read_text()), original, results.read_text()


def by_part(report: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in report["rows"]:
        rows.setdefault(row["part"], []).append(row)
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu_check_work")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, workdir):
    return run_check(tmp_path_factory.mktemp("dry_run"), workdir)


def test_dry_run_reports_a_real_result_for_every_part(dry_run, workdir):
    done, report, original, results = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = by_part(report)
    assert set(PARTS) <= set(rows), sorted(rows)
    if not HAVE_UPSTREAM:
        assert [r["status"] for r in rows["upstream"]] == ["skipped"], rows["upstream"]
        assert "no upstream checkout" in rows["upstream"][0]["text"]
    for part in PARTS if HAVE_UPSTREAM else [p for p in PARTS if p != "upstream"]:
        assert any(r["status"] == "ok" for r in rows[part]), (part, rows[part])
        assert not [r for r in rows[part] if r["status"] in ("failed", "timeout")], (part, rows[part])
        assert f"[{part}]" in done.stdout  # printed as it went

    inference = [r for r in rows["inference"] if r["status"] == "ok"]
    assert len(inference) == 2  # the tiny UNet with deep cache on and off
    for row in inference:
        values = row["values"]
        assert values["frames"] == 30 and values["frames_per_second"] > 0
        assert set(values["stages"]) == {"audio", "faces", "denoise", "write"}
        assert all(v > 0 for v in values["stages"].values())
    outputs = sorted((workdir / "inference").glob("*.mp4"))
    assert len(outputs) == 2 and all(p.stat().st_size > 1000 for p in outputs)

    if HAVE_UPSTREAM:
        upstream = {r["name"]: r for r in rows["upstream"]}
        assert upstream["upstream"]["values"]["module"].endswith("latentsync/pipelines/lipsync_pipeline.py")
        assert upstream["upstream"]["values"]["seconds"] > 0 and upstream["ours"]["values"]["seconds"] > 0
        difference = upstream["largest pixel difference"]["values"]
        assert difference["frames_compared"] == 30 and 0 <= difference["max_diff"] <= 255
        # Both pipelines changed only the face: almost every differing pixel lies in the face box.
        assert difference["share_over_1"] < 0.2 and difference["share_of_those_in_face_box"] > 0.5
        assert upstream["upstream / ours time"]["values"]["end_to_end"] > 0

    unet = {r["name"]: r for r in rows["unet"]}
    assert unet["fp32"]["values"]["ms"] > 0 and unet["fp32+dc3"]["values"]["percent_of_peak"] > 0
    assert unet["fp32+graph"]["status"] == "skipped" and "CUDA" in unet["fp32+graph"]["text"]

    stream = {r["name"]: r for r in rows["stream"]}
    assert stream["tiny UNet ddim:2"]["values"]["psnr"] == 99.0  # the reference against itself
    assert 0 < stream["tiny UNet ddim:1"]["values"]["psnr"] < 99.0
    live = stream["tiny UNet real time ddim:2, 16-frame clips"]["values"]
    assert live["frames"] > 75 and live["synced_frames"] > 0 and live["first_frame_latency"] > 0
    assert live["capacity_fps"] > 0 and live["onsets"] >= 1
    assert stream["tiny UNet UNet share"]["values"]["percent_of_peak"] > 0

    training = {r["name"]: r for r in rows["training"]}
    for config in ("stage1_tiny_cpu", "stage2_tiny_cpu"):
        for mode in ("ckpt", "plain"):
            values = training[f"{config} {mode}"]["values"]
            assert len(values["losses"]) == 2 and values["finite"] and values["weights_changed"]
            assert values["peak_rss_gib"] > 0.1
        assert training[f"{config} ckpt+8bit"]["status"] == "skipped"

    resumed = {r["name"]: r for r in rows["train_cli"]}["checkpoint saved and resumed"]["values"]
    assert len(resumed["losses"]) == 3 and resumed["changed"] > 0 and resumed["frozen_changed"] == 0
    assert (workdir / "train_cli" / "run" / "checkpoints" / "checkpoint-3.pt").is_file()

    same = {r["name"]: r for r in rows["determinism"]}["same seed twice"]["values"]
    assert same["frames"] == 20 and same["within"] == 0 and same["across"] == 0  # CPU runs are exact

    for row in [r for r in rows["eval"] if r["status"] == "ok"]:
        assert row["values"]["frames_per_second"] > 0 and row["values"]["scores"]
    assert {r["name"] for r in rows["eval"]} == {"sync confidence", "FVD + FID + SSIM/PSNR", "hyperIQA"}

    # The section was appended to the copy of RESULTS.md, whose earlier text is unchanged.
    assert results.startswith(original.rstrip("\n"))
    added = results[len(original.rstrip("\n")):]
    assert added.lstrip().startswith("## GPU check dry run (tiny models), ")
    for part in ("prepare", *PARTS):
        assert f"\n### {part} (" in added
    assert "| tiny UNet, deep cache on | " in added
    assert "| fp32+graph | **skipped**: cannot run here: CUDA graphs need a CUDA device |" in added


def test_a_failing_and_a_hanging_part_are_reported_and_the_others_still_run(tmp_path, workdir, dry_run):
    done, report, original, results = run_check(
        tmp_path, workdir, "--parts", "unet", "training", "eval", "--timeout", "eval=20",
        env={"LATENTSYNC_GPU_CHECK_FAULT": "unet:raise,eval:hang"},
    )
    assert done.returncode == 1
    rows = by_part(report)
    (unet,) = rows["unet"]
    assert unet["status"] == "failed" and "forced failure of part unet" in unet["text"]
    assert "RuntimeError" in unet["values"]["error_line"]
    (hung,) = rows["eval"]
    assert hung["status"] == "timeout" and hung["text"].startswith("timeout after 20 s")
    assert sum(r["status"] == "ok" for r in rows["training"]) >= 4  # the part before them ran
    assert [r["part"] for r in report["rows"]][-2:] == ["eval", "unet"]  # the part after the hung one ran
    added = results[len(original.rstrip("\n")):]
    assert "| unet | **failed**: RuntimeError: forced failure of part unet" in added
    assert "| eval | **timeout**: timeout after 20 s" in added
    assert "[unet] unet: FAILED: RuntimeError" in done.stdout


def test_landmarks_for_upstream_average_back_to_our_points():
    points = np.array([[107.2, 74.5], [149.6, 75.9], [126.4, 99.8]])
    box = np.array([90.3, 58.0, 167.6, 146.2])
    lmk = landmarks_106(points, box)
    assert lmk.shape == (106, 2) and lmk.dtype.kind == "i"
    # What upstream's image processor computes from them (rounded points, averaged, rounded again).
    upstream = np.round([lmk[list(indices)].mean(0) for indices in UPSTREAM_POINT_INDICES])
    np.testing.assert_array_equal(upstream, np.round(points))


def test_frame_difference_counts_pixels_and_where_they_are():
    ours = np.zeros((3, 10, 10, 3), np.uint8)
    theirs = ours.copy()
    theirs[0, 2:4, 2:4] = 9  # 4 pixels inside the box
    theirs[1, 9, 9] = 1  # within 1/255: not counted
    theirs[2, 8, 0] = 40  # outside the box
    boxes = np.array([[1, 1, 5, 5]] * 3, np.float64)
    found = frame_difference(ours, theirs[:2], boxes)
    assert found["frames_compared"] == 2 and found["max_diff"] == 9
    assert found["share_over_1"] == pytest.approx(4 / 200) and found["share_of_those_in_face_box"] == 1.0
    found = frame_difference(ours, theirs, boxes)
    assert found["max_diff"] == 40 and found["share_of_those_in_face_box"] == pytest.approx(4 / 5)


def test_card_fit_counts_the_cuda_context():
    assert fits(22.0) == {24: True, 40: True, 80: True}
    assert fits(23.5) == {24: False, 40: True, 80: True}
    assert fits(79.9) == {24: False, 40: False, 80: False}


def test_error_line_prefers_the_error_over_progress_bars():
    stderr = "loading\nTraceback (most recent call last):\n  File x\nValueError: bad frame\nSteps: 0%|  | 0/2\r"
    assert error_line(stderr) == "ValueError: bad frame"
    assert error_line("12:00:01 ERROR latentsync.training.cli: no usable video\nSteps:  0%").endswith("no usable video")
    assert error_line("x\nerror: --device cuda was requested\n") == "error: --device cuda was requested"


def test_fault_injection_and_atomic_append(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSYNC_GPU_CHECK_FAULT", "unet:raise, eval:hang,training:explode")
    assert forced_fault("unet") == "raise" and forced_fault("eval") == "hang"
    assert forced_fault("training") is None and forced_fault("inference") is None
    target = tmp_path / "RESULTS.md"
    target.write_text("# Results\n\nold\n")
    append_section(target, "## new\n\n| a | b |")
    assert target.read_text() == "# Results\n\nold\n\n## new\n\n| a | b |\n"
    assert os.listdir(tmp_path) == ["RESULTS.md"]
    assert Row("unet", "fp16", "text", "failed").line() == "[unet] fp16: FAILED: text"

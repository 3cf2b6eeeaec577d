"""The README's walked example, end to end (tools/walk_example.sh): every step's real outputs, and that the README
shows exactly the script's commands. Runs in CI: a handful of training steps on tiny models."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch

from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.probe import probe_video
from tests.conftest import REPO_ROOT
from tests.processes import run_group

SCRIPT = REPO_ROOT / "tools" / "walk_example.sh"


def _commands(text: str) -> list[str]:
    """The command lines between the script's markers (continuation lines joined)."""
    block = text.split("# --- the README's commands\n", 1)[1].split("# --- end of the README's commands", 1)[0]
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_shows_the_scripts_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    shown = readme.split("<!-- walked example: tools/walk_example.sh -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    normalise = lambda lines: [" ".join(line.split("  #", 1)[0].split()) for line in lines]  # noqa: E731
    assert normalise(_commands(SCRIPT.read_text())) == normalise(
        [line for line in shown.replace("\\\n", " ").splitlines() if line.strip()])


def _checkpoint(path: Path, step: int) -> None:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"state_dict", "global_step"} and saved["global_step"] == step, path
    assert len(saved["state_dict"]) > 10


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_walked_example(tmp_path):
    example = tmp_path / "example"
    env = {key: value for key, value in os.environ.items() if key not in ("LATENTSYNC_EXAMPLE", "PYTHONPATH")}
    done = run_group(["bash", str(SCRIPT), str(example)], timeout=1200, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-5000:]
    assert "Traceback" not in done.stderr

    raw = sorted(example.glob("raw/*.mp4"))
    assert [p.name for p in raw] == ["talk_000.mp4", "talk_001.mp4", "talk_002.mp4"]
    clips = sorted((example / "processed" / "high_visual_quality").glob("*.mp4"))
    assert len(clips) == 3  # one 5-10 s clip per raw video
    for clip in clips:
        info = probe_video(clip)
        assert (info.width, info.height) == (256, 256) and abs(info.fps - 25) < 0.01

    train, val = _lines(example / "fileslist" / "train.txt"), _lines(example / "fileslist" / "val.txt")
    assert len(train) == 2 and len(val) == 1 and sorted(train + val) == [str(c) for c in clips]

    for run, steps in (("syncnet", 10), ("stage1", 10), ("stage2", 3)):
        _checkpoint(example / run / "checkpoints" / f"checkpoint-{steps}.pt", steps)
        _checkpoint(example / run / "best_checkpoint.pt", steps)
    state = torch.load(example / "stage2" / "checkpoints" / "state-3.pt", weights_only=False)
    assert state["config"]["ckpt"]["syncnet_ckpt_path"] == str(example / "syncnet" / "best_checkpoint.pt")
    assert state["config"]["ckpt"]["init_ckpt_path"] == str(example / "stage1" / "best_checkpoint.pt")
    assert "sync" in state["history"]["terms"]  # stage 2 trained with the SyncNet's loss...
    assert not re.search(r"SyncNet is RANDOMLY INITIALISED", done.stderr)  # ...of the trained SyncNet

    audio_seconds = len(load_audio(example / "raw" / "talk_001.mp4")) / SAMPLE_RATE
    synced = probe_video(example / "synced.mp4")
    assert synced.has_audio and (synced.width, synced.height) == (256, 256)
    assert synced.num_frames / 25 == pytest.approx(audio_seconds, abs=1 / 25)  # as long as the audio
    assert len(load_audio(example / "synced.mp4")) / SAMPLE_RATE == pytest.approx(audio_seconds, abs=1 / 25)

    with open(example / "eval" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["error"] == "" and float(rows[0]["ssim"]) > 0
    report = json.loads((example / "eval" / "metrics.json").read_text())
    assert report["summary"]["videos"] == 1 and report["summary"]["failed"] == 0
    assert isinstance(report["rows"][0]["lse_c"], float) and isinstance(report["rows"][0]["hyperiqa"], float)

"""Evaluation lists (``video,audio`` CSV rows) and the inference run that turns them into videos.

Inference is the project's own CLI, ``python -m scripts.inference --batch pairs.csv``, started as
a subprocess with an argument list: evaluation never builds a second pipeline. The batch run skips
outputs that already exist, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

from latentsync.errors import ConfigError
from latentsync.paths import PROJECT_ROOT
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPair:
    """A source video, the audio to sync it to, and where the generated video goes."""

    video: str
    audio: str
    output: str


def read_eval_list(path: str | os.PathLike, output_dir: str | os.PathLike) -> list[EvalPair]:
    """Rows ``video,audio`` (paths relative to the CSV; a ``video,audio`` header and # comments are skipped).

    Outputs are ``output_dir/<video stem>__<audio stem>.mp4``.
    """
    path, output_dir = os.fspath(path), os.path.abspath(os.fspath(output_dir))
    if not os.path.isfile(path):
        raise ConfigError(f"evaluation list not found: {path!r}")
    base = os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            row = [cell.strip() for cell in row]
            if not any(row) or row[0].startswith("#"):
                continue
            if number == 1 and [c.lower() for c in row[:2]] == ["video", "audio"]:
                continue
            if len(row) != 2:
                raise ConfigError(f"{path} line {number}: expected video,audio, got {len(row)} fields")
            video, audio = (os.path.join(base, cell) for cell in row)
            name = f"{_stem(video)}__{_stem(audio)}.mp4"
            pairs.append(EvalPair(video, audio, os.path.join(output_dir, name)))
    if not pairs:
        raise ConfigError(f"evaluation list {path!r} has no video,audio rows")
    return pairs


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def write_batch_csv(pairs: Sequence[EvalPair], path: str | os.PathLike) -> str:
    """The ``video,audio,output`` CSV that ``scripts.inference --batch`` reads (absolute paths)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "audio", "output"])
        for pair in pairs:
            writer.writerow([os.path.abspath(pair.video), os.path.abspath(pair.audio), pair.output])
    return os.fspath(path)


def inference_command(batch_csv: str, checkpoint: str, unet_config: str | None = None,
                      extra_args: Sequence[str] = ()) -> list[str]:
    """The inference CLI call for a batch CSV, as an argument list."""
    cmd = [sys.executable, "-m", "scripts.inference", "--batch", os.path.abspath(batch_csv),
           "--inference_ckpt_path", os.path.abspath(checkpoint)]
    if unet_config:
        cmd += ["--unet_config_path", unet_config]
    return cmd + list(extra_args)


def run_inference(pairs: Sequence[EvalPair], checkpoint: str, output_dir: str, unet_config: str | None = None,
                  extra_args: Sequence[str] = ()) -> int:
    """Generate every pair's output with the inference CLI; return its exit status (1 when some pairs failed)."""
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint not found: {checkpoint!r}")
    os.makedirs(output_dir, exist_ok=True)
    batch_csv = write_batch_csv(pairs, os.path.join(output_dir, "pairs.csv"))
    cmd = inference_command(batch_csv, checkpoint, unet_config, extra_args)
    logger.info("running %s", " ".join(cmd))
    # Relative config paths (configs/...) are the project's: run from its root.
    return subprocess.run(cmd, cwd=PROJECT_ROOT, check=False).returncode

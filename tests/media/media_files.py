"""Media files made by the media tests: numbered grey videos, names ffmpeg must not misread, ffmpeg itself."""

from __future__ import annotations

import subprocess

import numpy as np

from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.writer import VideoWriter

ODD_NAME = "clip with 'quotes'; and \"more\""


def run_ffmpeg_cli(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def write_grey_video(path, n_frames: int, fps: float, size=(64, 48)) -> None:
    """Frame i is a flat grey of level 8 * (i % 32), so a decoded frame tells which source frame it was."""
    width, height = size
    with VideoWriter(path, fps, width, height) as writer:
        for i in range(n_frames):
            writer.write(np.full((height, width, 3), 8 * (i % 32), np.uint8))


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.astype(float).mean() / 8))

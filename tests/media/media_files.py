"""Media files made by the media tests: numbered grey videos, names ffmpeg must not misread, ffmpeg itself."""

from __future__ import annotations

import subprocess

import numpy as np

from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.writer import VideoWriter

ODD_NAME = "clip with 'quotes'; and \"more\""

# How ffmpeg converts RGB to YUV and tags the stream, for sources made by ffmpeg itself.
FFMPEG_COLOUR = {
    "bt601": ["-vf", "scale=out_color_matrix=bt601:out_range=tv", "-colorspace", "smpte170m",
              "-color_primaries", "smpte170m", "-color_trc", "smpte170m", "-color_range", "tv"],
    "bt709": ["-vf", "scale=out_color_matrix=bt709:out_range=tv", "-colorspace", "bt709",
              "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"],
    "bt709_full": ["-vf", "scale=out_color_matrix=bt709:out_range=pc", "-colorspace", "bt709",
                   "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "pc"],
    "untagged": [],  # ffmpeg's own untagged output: BT.601, limited range
}


def run_ffmpeg_cli(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def write_with_ffmpeg(path, frames: list[np.ndarray], colour: str, fps: float = 25, *extra: str) -> None:
    """Encode RGB ``frames`` with the ffmpeg binary (libx264, yuv420p), converted and tagged as
    ``FFMPEG_COLOUR[colour]`` says, so the file's colours do not depend on this project's writer."""
    height, width = frames[0].shape[:2]
    raw = np.ascontiguousarray(np.stack(frames)).tobytes()
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", *FFMPEG_COLOUR[colour],
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-crf", "16", *extra, str(path)],
                   input=raw, check=True)


def ffmpeg_rgb(path, size: tuple[int, int], *options: str) -> np.ndarray:
    """All frames of ``path`` as ffmpeg's own ``-pix_fmt rgb24`` output, (N, H, W, 3) uint8 for the
    displayed ``size`` (W, H) (ffmpeg turns rotated video upright)."""
    done = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), *options,
                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    width, height = size
    return np.frombuffer(done.stdout, np.uint8).reshape(-1, height, width, 3)


def write_grey_video(path, n_frames: int, fps: float, size=(64, 48)) -> None:
    """Frame i is a flat grey of level 8 * (i % 32), so a decoded frame tells which source frame it was."""
    width, height = size
    with VideoWriter(path, fps, width, height) as writer:
        for i in range(n_frames):
            writer.write(np.full((height, width, 3), 8 * (i % 32), np.uint8))


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.astype(float).mean() / 8))

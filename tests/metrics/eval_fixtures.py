"""Videos whose frames say their own index, to check which frames a metric takes.

(The evaluation's model files in the official layouts are written by ``tools/eval_models.py``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentsync.media.writer import VideoWriter

INDEX_BITS = 8  # vertical stripes of an index-coded frame


def write_index_coded_video(path: Path, count: int, fps: float, size: int = 256) -> Path:
    """``count`` frames at ``fps``; frame k is k in binary: stripe b (of 8, left to right) white when bit b is set."""
    stripe = size // INDEX_BITS
    with VideoWriter(path, fps, size, size) as writer:
        for k in range(count):
            frame = np.zeros((size, size, 3), np.uint8)
            for bit in range(INDEX_BITS):
                if k >> bit & 1:
                    frame[:, bit * stripe : (bit + 1) * stripe] = 255
            writer.write(frame)
    return path


def coded_indices(frames: np.ndarray) -> list[int]:
    """The index each (H, W, 3) frame of an index-coded video shows (read at the stripes' centres, any size)."""
    width = frames.shape[2]
    centres = [(2 * bit + 1) * width // (2 * INDEX_BITS) for bit in range(INDEX_BITS)]
    return [sum(1 << bit for bit, x in enumerate(centres) if frame[:, x].mean() > 127) for frame in frames]

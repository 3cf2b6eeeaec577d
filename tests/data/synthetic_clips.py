"""Tiny talking-head clips made inside tests: noise-burst "speech" with a mouth that follows it.

No espeak-ng needed; a few seconds of 64x64 video encode in well under a second.
"""

from __future__ import annotations

import os

import numpy as np

from tools.synthetic_media import write_talking_video

SAMPLE_RATE = 16000


def burst_audio(seconds: float, seed: int) -> np.ndarray:
    """Band-limited noise switched on and off in random syllable-length bursts, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    gate = np.zeros(n, np.float32)
    t = 0
    while t < n:
        length = int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
        if rng.random() < 0.6:
            gate[t : t + length] = rng.uniform(0.3, 1.0)
        t += length
    noise = rng.standard_normal(n).astype(np.float32)
    smooth = np.convolve(noise, np.ones(8, np.float32) / 8, mode="same")
    return (0.5 * gate * smooth / max(1e-6, np.abs(smooth).max())).astype(np.float32)


def make_clip(path: str | os.PathLike, seconds: float, seed: int, size: int = 64, with_audio: bool = True) -> str:
    """Write a clip of ``seconds`` at 25 fps, ``size`` x ``size``; return its path."""
    write_talking_video(path, burst_audio(seconds, seed), size=(size, size), seed=seed, with_audio=with_audio)
    return os.fspath(path)


def make_clip_set(folder: str | os.PathLike, count: int, seconds: float = 2.0, seed: int = 0, size: int = 64) -> list[str]:
    """``count`` clips ``clip_000_000.mp4``... in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    return [make_clip(os.path.join(folder, f"clip_{k:03d}_000.mp4"), seconds, seed + k, size) for k in range(count)]

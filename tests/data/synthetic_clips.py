"""Tiny talking-head clips made inside tests: noise-burst "speech" with a mouth that follows it.

No espeak-ng needed; a few seconds of 64x64 video encode in well under a second.
"""

from __future__ import annotations

import os

from tools.synthetic_media import burst_audio, write_talking_video


def make_clip(path: str | os.PathLike, seconds: float, seed: int, size: int = 64, with_audio: bool = True) -> str:
    """Write a clip of ``seconds`` at 25 fps, ``size`` x ``size``; return its path."""
    write_talking_video(path, burst_audio(seconds, seed), size=(size, size), seed=seed, with_audio=with_audio)
    return os.fspath(path)


def make_clip_set(folder: str | os.PathLike, count: int, seconds: float = 2.0, seed: int = 0, size: int = 64) -> list[str]:
    """``count`` clips ``clip_000_000.mp4``... in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    return [make_clip(os.path.join(folder, f"clip_{k:03d}_000.mp4"), seconds, seed + k, size) for k in range(count)]

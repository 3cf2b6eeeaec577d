"""The options of a streaming session that an offline run does not have (latency, blending, the avatar cache).

Everything a session shares with offline inference (sampler, steps, guidance, seed, deep cache, face
detection) comes from :class:`~latentsync.settings.InferenceSettings`; :class:`StreamOptions` adds
the rest, each checked once when made (a :class:`~latentsync.errors.ConfigError` naming it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from latentsync.errors import ConfigError

ACCELERATIONS = ("none", "compile", "cudagraphs")  # how the UNet runs (latentsync.streaming.acceleration)


@dataclass(frozen=True)
class StreamOptions:
    """How a session trades latency for throughput and how it blends speech in and out.

    ``clip_frames``: frames denoised together (None: the UNet config's, 16 for the released models).
    A clip is generated once its audio (and 280 ms beyond it, see
    :mod:`latentsync.whisper.stream_windows`) has arrived, so 8 frames answer 320 ms sooner than 16;
    the motion modules were trained on 16. Multiples of 4 waste no look-ahead.
    ``blend_frames``: speech fades in and out over this many frames (the face's alpha moves by
    1/blend_frames per frame, never more). ``hangover_frames``: frames the face keeps talking after
    the last voiced one (bridges the pauses between words). ``silence_dbfs``: a frame whose pushed audio
    is quieter than this (RMS, dB full scale) is silent; None: any pushed audio is speech.
    ``compute_margin``: seconds a clip is expected to take (None: measured on a warm-up clip when the
    session opens on a real-time clock, 0 on a virtual one). ``jitter``: seconds of lateness in the
    pushes a real-time session absorbs. ``buffer_frames``: how far a reader may fall behind (a real-time
    session drops frames overdue by more than this many frame times; otherwise the generator waits
    while this many frames are unread). ``avatar_cache_dir``:
    where prepared avatars are kept (None: :func:`latentsync.paths.avatar_cache_dir`; "" keeps them in
    memory only). ``acceleration``: "compile" or "cudagraphs" run the UNet through ``torch.compile`` on CUDA (falling
    back to the plain UNet, logged, where they cannot: :mod:`latentsync.streaming.acceleration`).
    """

    clip_frames: int | None = None
    blend_frames: int = 4
    hangover_frames: int = 8
    silence_dbfs: float | None = -50.0
    compute_margin: float | None = None
    jitter: float = 0.04
    buffer_frames: int = 50
    avatar_cache_dir: str | None = None
    acceleration: str = "none"

    def __post_init__(self) -> None:
        def bad(name: str, says: str) -> ConfigError:
            return ConfigError(f"stream option {name} {says}, got {getattr(self, name)!r}")

        if self.clip_frames is not None and not (isinstance(self.clip_frames, int) and self.clip_frames >= 1):
            raise bad("clip_frames", "must be a whole number >= 1 (or None: the UNet config's)")
        for name in ("blend_frames", "buffer_frames"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise bad(name, "must be a whole number >= 1")
        if not (isinstance(self.hangover_frames, int) and self.hangover_frames >= 0):
            raise bad("hangover_frames", "must be a whole number >= 0")
        if self.silence_dbfs is not None and not (math.isfinite(self.silence_dbfs) and self.silence_dbfs <= 0):
            raise bad("silence_dbfs", "must be a level in dB full scale <= 0 (or None: no silence gate)")
        for name in ("compute_margin", "jitter"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise bad(name, "must be a number of seconds >= 0")
        if self.acceleration not in ACCELERATIONS:
            raise bad("acceleration", f"must be one of {', '.join(ACCELERATIONS)}")
        if self.avatar_cache_dir is not None:
            object.__setattr__(self, "avatar_cache_dir", os.fspath(self.avatar_cache_dir))

    def replace(self, **changes: Any) -> "StreamOptions":
        """A copy with ``changes`` (checked like every options object)."""
        return replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

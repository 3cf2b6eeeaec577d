"""Decoding the audio of any media file to the mono float samples every audio model here reads."""

from __future__ import annotations

import os

import numpy as np

from latentsync.errors import MediaError
from latentsync.media.ffmpeg import ffmpeg_path, run_ffmpeg
from latentsync.utils.files import require_file

SAMPLE_RATE = 16000  # Hz, what every audio model in this project expects
INT16_SCALE = 32768.0  # s16le sample -> float in [-1, 1)


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any file (wav, mp3, a video...) to mono float32 in [-1, 1].

    ffmpeg resamples to ``sample_rate`` and writes 16-bit PCM, which is divided by 32768,
    exactly as openai-whisper loads audio. Returns shape (samples,).
    """
    path = require_file(path, "audio")
    raw = run_ffmpeg(
        [
            "-threads", "0",
            "-i", ffmpeg_path(path),
            "-map", "0:a:0",  # fails clearly when there is no audio stream
            "-f", "s16le",
            "-ac", "1",
            "-acodec", "pcm_s16le",
            "-ar", str(sample_rate),
            "-",
        ],
        path,
        "decode audio from",
    )
    if len(raw) < 2:
        raise MediaError(f"audio file has no samples: {path!r}")
    return np.frombuffer(raw, np.int16).astype(np.float32) / INT16_SCALE

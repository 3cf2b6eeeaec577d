"""Audio chunks as they arrive (any size, rate, channels, int16 or float PCM) to 16 kHz mono float32.

Stereo is averaged to mono (as ffmpeg's ``-ac 1`` does); int16 is divided by 32768 and int32 by
2**31 (as the offline loader reads 16-bit PCM); float samples are taken as they are. Other rates are
resampled by soxr's streaming resampler, whose state runs across chunks, so how the audio was cut
into chunks does not change a sample (16 kHz input passes through unchanged).
"""

from __future__ import annotations

import numpy as np
import soxr

from latentsync.errors import StreamError
from latentsync.media.audio import INT16_SCALE, SAMPLE_RATE

MAX_CHANNELS = 8  # a 2-D chunk is (samples, channels); more columns than this is a transposed array
_SCALES = {np.dtype(np.int16): INT16_SCALE, np.dtype(np.int32): 2.0**31}


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """A chunk (n,) or (n, channels) of int16/int32/float PCM as (n,) float32 mono; a StreamError if it is not PCM."""
    array = np.asarray(samples)
    if array.ndim == 2 and array.shape[1] > MAX_CHANNELS and array.shape[0] <= MAX_CHANNELS:
        raise StreamError(
            f"audio chunk of shape {array.shape} looks like (channels, samples); pass (samples, channels)"
        )
    if array.ndim not in (1, 2) or (array.ndim == 2 and not 1 <= array.shape[1] <= MAX_CHANNELS):
        raise StreamError(f"audio chunk must be (samples,) or (samples, channels <= {MAX_CHANNELS}), got {array.shape}")
    if array.dtype in _SCALES:
        mono = array.astype(np.float32) / np.float32(_SCALES[array.dtype])
    elif np.issubdtype(array.dtype, np.floating):
        mono = array.astype(np.float32)
        if not np.isfinite(mono).all():
            raise StreamError("audio chunk has NaN or infinite samples")
    else:
        raise StreamError(f"audio samples must be int16, int32 or float PCM, got {array.dtype}")
    if mono.ndim == 2:
        mono = mono.mean(axis=1, dtype=np.float32) if mono.shape[1] > 1 else mono[:, 0]
    return np.ascontiguousarray(mono)


def check_rate(sample_rate: object) -> int:
    """``sample_rate`` as a positive whole number of samples per second, or a StreamError."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float)):
        raise StreamError(f"sample_rate must be a number of samples per second, got {sample_rate!r}")
    if not (float(sample_rate) > 0 and float(sample_rate).is_integer()):
        raise StreamError(f"sample_rate must be a positive whole number of samples per second, got {sample_rate!r}")
    return int(sample_rate)


class AudioInput:
    """Chunks in, 16 kHz mono float32 out; a new rate flushes the old resampler first."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._resampler: soxr.ResampleStream | None = None

    def convert(self, samples: np.ndarray, sample_rate: object) -> np.ndarray:
        """The 16 kHz mono samples a chunk adds (the resampler may hold back a few ms until the next one)."""
        rate = check_rate(sample_rate)
        mono = to_mono_float(samples)
        out = [np.zeros(0, np.float32)]
        if rate != self._rate:
            out.append(self.flush())
            self._rate = rate
            self._resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        if self._resampler is None:
            out.append(mono)
        elif len(mono):
            out.append(self._resampler.resample_chunk(mono))
        return np.concatenate(out)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (at the end of the input, or before the rate changes)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._resampler = soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32")
        return np.asarray(tail, np.float32)

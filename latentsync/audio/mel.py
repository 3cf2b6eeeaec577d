"""Wav2Lip-style mel spectrogram (``configs/audio.yaml``) and its per-clip windows.

The SyncNet and UNet data sets feed the audio branch 16 video frames' worth of mel
columns: 80 columns per second (hop 200 at 16 kHz), so 3.2 columns per 25 fps frame.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Mapping

import librosa
import numpy as np
from omegaconf import DictConfig
from scipy import signal

from latentsync.config import load_config
from latentsync.errors import ConfigError
from latentsync.paths import AUDIO_CONFIG

MEL_FPS = 80.0  # mel columns per second for the default config (16000 Hz / hop 200)


def load_audio_config(path: str | os.PathLike = AUDIO_CONFIG) -> DictConfig:
    """The read-only ``audio`` section of an audio config file."""
    return load_config(path, required=("audio.num_mels", "audio.n_fft", "audio.sample_rate")).audio


def _section(audio_config: Mapping) -> Mapping:
    # Accept either the whole file ({"audio": {...}}) or its "audio" section.
    return audio_config["audio"] if "audio" in audio_config else audio_config


def hop_size(audio_config: Mapping) -> int:
    """STFT hop in samples: ``hop_size``, or ``frame_shift_ms`` converted at the sample rate."""
    cfg = _section(audio_config)
    if cfg.get("hop_size") is not None:
        return int(cfg["hop_size"])
    if cfg.get("frame_shift_ms") is None:
        raise ConfigError("audio config needs hop_size or frame_shift_ms")
    return int(cfg["frame_shift_ms"] / 1000 * cfg["sample_rate"])


def preemphasis(wav: np.ndarray, coefficient: float) -> np.ndarray:
    """High-pass y[n] = x[n] - k x[n-1] (y[0] = x[0]), in float64."""
    return signal.lfilter([1.0, -coefficient], [1.0], wav)


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    if fmax > sample_rate / 2:
        raise ConfigError(f"audio config fmax {fmax} exceeds the Nyquist frequency {sample_rate / 2}")
    # librosa's defaults: Slaney mel scale, Slaney area normalisation.
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def _normalize(db: np.ndarray, cfg: Mapping) -> np.ndarray:
    """Map dB in [min_level_db, 0] linearly to [-m, m] (symmetric) or [0, m], clipping if allowed."""
    m = cfg["max_abs_value"]
    unit = (db - cfg["min_level_db"]) / -cfg["min_level_db"]  # 0 at the floor, 1 at 0 dB
    if cfg["symmetric_mels"]:
        out, low = 2 * m * unit - m, -m
    else:
        out, low = m * unit, 0.0
    if cfg["allow_clipping_in_normalization"]:
        out = np.clip(out, low, m)
    return out


def melspectrogram(wav: np.ndarray, audio_config: Mapping) -> np.ndarray:
    """(num_mels, 1 + samples // hop) float64 normalised log-mel of mono ``wav`` at the config's rate.

    Pre-emphasis, zero-padded centred STFT magnitude, Slaney mel, 20 log10 with a floor at
    ``min_level_db``, minus ``ref_level_db``, then normalisation. ``rescale`` is not applied.
    """
    cfg = _section(audio_config)
    if cfg.get("use_lws"):
        raise ConfigError("audio config use_lws: true is not supported; set it to false")
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got {wav.shape}")
    if cfg["preemphasize"]:
        wav = preemphasis(wav, cfg["preemphasis"])
    spectrum = librosa.stft(
        y=wav,
        n_fft=cfg["n_fft"],
        hop_length=hop_size(cfg),
        win_length=cfg["win_size"],
        center=True,
        pad_mode="constant",  # zeros, librosa's default since 0.10
    )
    basis = _mel_basis(cfg["sample_rate"], cfg["n_fft"], cfg["num_mels"], cfg["fmin"], cfg["fmax"])
    mel = basis @ np.abs(spectrum)
    floor = 10.0 ** (cfg["min_level_db"] / 20)
    db = 20 * np.log10(np.maximum(floor, mel)) - cfg["ref_level_db"]
    return _normalize(db, cfg) if cfg["signal_normalization"] else db


def mel_window_length(num_frames: int = 16, fps: float = 25, mel_fps: float = MEL_FPS) -> int:
    """Mel columns covering ``num_frames`` video frames, rounded up: 52 for 16 frames at 25 fps."""
    return math.ceil(mel_fps / fps * num_frames)


def mel_window_start(start_frame: int, fps: float = 25, mel_fps: float = MEL_FPS) -> int:
    """First mel column of video frame ``start_frame``: int(mel_fps * start_frame / fps), 16 for frame 5."""
    return int(mel_fps * (start_frame / float(fps)))


def mel_window(
    mel: np.ndarray, start_frame: int, num_frames: int = 16, fps: float = 25, mel_fps: float = MEL_FPS
) -> np.ndarray | None:
    """(1, num_mels, 52) mel columns for the clip of ``num_frames`` frames starting at ``start_frame``.

    Returns None when the audio ends before the window does; the data sets then skip the sample.
    """
    start = mel_window_start(start_frame, fps, mel_fps)
    length = mel_window_length(num_frames, fps, mel_fps)
    if start < 0 or start + length > mel.shape[1]:
        return None
    return mel[None, :, start : start + length]


def last_valid_start_frame(
    num_mel_columns: int, num_frames: int = 16, fps: float = 25, mel_fps: float = MEL_FPS
) -> int:
    """Largest start frame whose :func:`mel_window` fits in ``num_mel_columns`` (-1 if none does)."""
    length = mel_window_length(num_frames, fps, mel_fps)
    frame = max(0, int((num_mel_columns - length) * fps / mel_fps) + 1)
    while frame >= 0 and mel_window_start(frame, fps, mel_fps) + length > num_mel_columns:
        frame -= 1
    return frame

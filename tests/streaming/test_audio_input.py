"""Audio chunks of any shape, type and rate to 16 kHz mono float32, independent of how the audio was cut."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from latentsync.errors import StreamError
from latentsync.streaming.audio_input import AudioInput, check_rate, to_mono_float


def _speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
            ).astype(np.float32)


def _pushed(audio: np.ndarray, rate: int, sizes: list[int]) -> np.ndarray:
    source, out, start = AudioInput(), [], 0
    for size in sizes:
        out.append(source.convert(audio[start : start + size], rate))
        start += size
    out.append(source.convert(audio[start:], rate))
    out.append(source.flush())
    return np.concatenate(out)


def test_int16_int32_and_float_pcm_give_the_same_samples():
    floats = np.array([0.0, 0.5, -0.25, -1.0], np.float32)
    np.testing.assert_array_equal(to_mono_float((floats * 32768).astype(np.int16).clip(-32768, 32767)),
                                  np.array([0.0, 0.5, -0.25, -1.0], np.float32))
    np.testing.assert_array_equal(to_mono_float((floats.astype(np.float64) * 2**31).astype(np.int32)), floats)
    np.testing.assert_array_equal(to_mono_float(floats.astype(np.float64)), floats)


def test_stereo_is_the_mean_of_its_channels_and_one_column_is_mono():
    left = np.array([1000, -2000, 300], np.int16)
    right = np.array([3000, 2000, -301], np.int16)
    mono = to_mono_float(np.stack([left, right], axis=1))
    np.testing.assert_allclose(mono, (left.astype(np.float32) + right) / 2 / 32768, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(to_mono_float(left[:, None]), left / np.float32(32768))


@pytest.mark.parametrize("bad, says", [
    (np.zeros((2, 4000), np.float32), "looks like \\(channels, samples\\)"),
    (np.zeros((10, 20), np.float32), "channels <= 8"),
    (np.zeros((3, 2, 2), np.float32), "must be \\(samples,\\)"),
    (np.array([0.1, np.nan], np.float32), "NaN or infinite"),
    (np.array(["a", "b"]), "int16, int32 or float"),
    (np.zeros(4, np.uint8), "int16, int32 or float"),
])
def test_chunks_that_are_not_pcm_are_refused(bad, says):
    with pytest.raises(StreamError, match=says):
        to_mono_float(bad)


@pytest.mark.parametrize("rate", [0, -16000, 0.5, 16000.5, "16000", None, True, float("nan")])
def test_nonsense_sample_rates_are_refused(rate):
    with pytest.raises(StreamError, match="sample_rate must be"):
        check_rate(rate)


def test_16khz_passes_through_unchanged_and_empty_chunks_add_nothing():
    audio = _speechlike(0.5, 16000)
    np.testing.assert_array_equal(_pushed(audio, 16000, [0, 100, 0, 333]), audio)
    assert len(AudioInput().convert(np.zeros(0, np.int16), 44100)) == 0


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampling_does_not_depend_on_the_chunking(rate):
    audio = _speechlike(1.3, rate, seed=rate)
    whole = _pushed(audio, rate, [])
    rng = np.random.default_rng(1)
    pieces = _pushed(audio, rate, list(rng.integers(1, 3000, size=40)))
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_allclose(whole, soxr.resample(audio, rate, 16000), rtol=0, atol=1e-6)
    assert abs(len(whole) - round(len(audio) * 16000 / rate)) <= 1


def test_a_new_rate_mid_stream_flushes_the_old_one_first():
    first, second = _speechlike(0.4, 48000), _speechlike(0.3, 16000, seed=3)
    source = AudioInput()
    out = np.concatenate([source.convert(first, 48000), source.convert(second, 16000), source.flush()])
    np.testing.assert_allclose(out[: len(out) - len(second)], soxr.resample(first, 48000, 16000), atol=1e-6)
    np.testing.assert_array_equal(out[-len(second):], second)

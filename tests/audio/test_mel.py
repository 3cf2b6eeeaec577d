"""Wav2Lip mel against the reference's golden vectors (audio_mel.pt): atol 1e-4, rtol 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.audio.mel import (
    last_valid_start_frame,
    load_audio_config,
    mel_window,
    mel_window_length,
    mel_window_start,
    melspectrogram,
    preemphasis,
)
from latentsync.errors import ConfigError
from tests.conftest import load_golden


@pytest.fixture(scope="module")
def golden():
    return load_golden("audio_mel.pt")


@pytest.fixture(scope="module")
def config():
    return load_audio_config()


@pytest.fixture(scope="module")
def waveform(golden):
    return (golden["inputs"]["waveform_int16"].numpy().astype(np.float32)) / 32768


def test_config_matches_reference(golden, config):
    for key, value in golden["config"]["audio_yaml"].items():
        assert config[key] == value, key


def test_preemphasis(golden, config, waveform):
    out = preemphasis(waveform, config.preemphasis)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[:10], golden["outputs"]["preemphasis_first10"].numpy(), rtol=1e-12, atol=0)


def test_melspectrogram_matches_golden(golden, config, waveform):
    mel = melspectrogram(waveform, config)
    expected = golden["outputs"]["melspectrogram"].numpy()
    assert mel.shape == expected.shape == (80, 1 + len(waveform) // 200)
    np.testing.assert_allclose(mel, expected, atol=golden["atol"], rtol=golden["rtol"])
    assert mel.min() >= -4 and mel.max() <= 4


def test_mel_window_start5(golden, config, waveform):
    mel = melspectrogram(waveform, config)
    start = golden["inputs"]["start_frame"]
    assert mel_window_start(start) == golden["outputs"]["window_start_mel_index"] == 16
    assert mel_window_length() == golden["config"]["mel_window_length"] == 52
    window = mel_window(mel, start)
    expected = golden["outputs"]["mel_window_start5"].numpy()
    np.testing.assert_allclose(window, expected, atol=golden["atol"], rtol=golden["rtol"])

    last = last_valid_start_frame(mel.shape[1])
    assert last == golden["outputs"]["last_valid_start_frame_for_this_clip"] == 66
    assert mel_window(mel, last).shape == (1, 80, 52)
    assert mel_window(mel, last + 1) is None


def test_float_start_rule_matches_integer_rule():
    assert all(mel_window_start(s) == 16 * s // 5 for s in range(2000))


def test_lws_is_rejected(config, waveform):
    with pytest.raises(ConfigError, match="use_lws"):
        melspectrogram(waveform, {**config, "use_lws": True})

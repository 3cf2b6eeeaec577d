"""Offset / LSE-D / LSE-C arithmetic: the upstream golden case and constructed curves with known answers."""

import numpy as np
import pytest
import python_speech_features
import torch

from latentsync.metrics.sync_confidence import (
    VSHIFT, mfcc, offset_confidence, shifted_distances, window_count,
)
from tests.golden_weights import eval_golden


def test_golden_offset_distance_and_confidence():
    data = eval_golden()["sync_conf"]
    dists = shifted_distances(data["im_feat"], data["cc_feat"], data["vshift"])
    result = offset_confidence(dists, data["vshift"])
    expected = data["mean_dists"]
    assert torch.linalg.norm(torch.from_numpy(result.mean_dists) - expected) / torch.linalg.norm(expected) <= 1e-4
    assert result.offset == data["av_offset"] == -3
    assert result.min_dist == pytest.approx(data["min_dist"], rel=1e-4)
    assert result.confidence == pytest.approx(data["conf"], rel=1e-4)


@pytest.mark.parametrize("k", [-7, 0, 4, 15])
def test_sharp_minimum_at_offset_k(k):
    n = 40
    dists = torch.full((n, 2 * VSHIFT + 1), 10.0)
    dists[:, VSHIFT - k] = 2.0  # every window agrees: shift index vshift - k
    result = offset_confidence(dists)
    assert result.offset == k
    assert result.min_dist == pytest.approx(2.0)
    assert result.confidence == pytest.approx(8.0)  # median 10 - minimum 2
    np.testing.assert_allclose(result.frame_dists, 2.0)
    np.testing.assert_allclose(result.frame_confidence, 8.0)


def test_flat_curve_has_no_confidence():
    dists = 10.0 + 1e-3 * torch.rand(60, 2 * VSHIFT + 1)
    result = offset_confidence(dists)
    assert 0 <= result.confidence < 1e-3


@pytest.mark.parametrize("k", [-3, 5])
def test_features_shifted_by_k_frames_give_offset_k(k):
    gen = torch.Generator().manual_seed(0)
    n, dim = 80, 32
    audio = torch.randn(n + 2 * VSHIFT, dim, generator=gen)
    video = audio[VSHIFT - k : VSHIFT - k + n] + 0.05 * torch.randn(n, dim, generator=gen)  # video i ~ audio i - k
    result = offset_confidence(shifted_distances(video, audio[VSHIFT : VSHIFT + n]))
    assert result.offset == k
    assert result.confidence > 1.0


def test_mfcc_is_python_speech_features_on_int16_values():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    expected = python_speech_features.mfcc(audio.astype(np.float64) * 32768, 16000)
    got = mfcc(audio)
    assert got.shape == (13, expected.shape[0]) and expected.shape[0] == 99
    np.testing.assert_allclose(got, expected.T, rtol=1e-5, atol=1e-4)


def test_window_count_follows_the_shorter_stream():
    assert window_count(100, 100 * 640) == 95
    assert window_count(100, 50 * 640 + 639) == 45
    assert window_count(4, 10**6) == 0

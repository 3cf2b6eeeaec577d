"""SyncNet accuracy: decisions at the 0.5 similarity threshold, summed BCE, additive scores."""

from __future__ import annotations

import math

import pytest
import torch

from latentsync.metrics.syncnet_accuracy import SyncScore, evaluate


class EmbeddingsAsInputs(torch.nn.Module):
    """A 'SyncNet' whose embeddings are the first two input values of each stream."""

    def forward(self, frames, audio):
        return frames.flatten(1)[:, :2], audio.flatten(1)[:, :2]


def batch(vision, audio, y):
    b = len(y)
    frames = torch.zeros(b, 1, 3, 2, 2)
    frames.view(b, -1)[:, :2] = torch.tensor(vision)
    mels = torch.zeros(b, 1, 2, 2)
    mels.view(b, -1)[:, :2] = torch.tensor(audio)
    return {"frames": frames, "audio_samples": mels, "y": torch.tensor(y).reshape(b, 1)}


def test_accuracy_and_loss_on_known_similarities():
    batches = [
        batch([[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [1.0, 0.0]),  # cos 1 (in sync), cos 0 (shifted): right
        batch([[1.0, 0.0]], [[1.0, 1.0]], [0.0]),  # cos 0.707 > 0.5 judged in sync, labelled shifted: wrong
    ]
    score = evaluate(EmbeddingsAsInputs(), batches, None, lower_half=True, device=torch.device("cpu"), progress=False)
    assert (score.correct, score.count) == (2, 3)
    assert score.accuracy == pytest.approx(2 / 3)
    expected = -math.log(1.0) - math.log(1 - 0.0) - math.log(1 - 1 / math.sqrt(2))  # BCE of each pair
    assert score.loss_sum == pytest.approx(expected, rel=1e-5)
    assert score.loss == pytest.approx(expected / 3, rel=1e-5)
    strict = evaluate(EmbeddingsAsInputs(), batches, None, True, torch.device("cpu"), threshold=0.8, progress=False)
    assert strict.correct == 3


def test_scores_add_over_ranks_as_lists():
    a, b = SyncScore(1.0, 3, 4), SyncScore(2.0, 1, 4)
    total = SyncScore.from_list([x + y for x, y in zip(a.as_list(), b.as_list())])
    assert (total.loss, total.accuracy) == (pytest.approx(3.0 / 8), 0.5)
    assert SyncScore().accuracy == 0.0  # no pairs: no division by zero

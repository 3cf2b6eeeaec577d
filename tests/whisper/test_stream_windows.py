"""Whisper's ``stream`` window mode: a stream's tokens equal the offline mode's exactly, whatever the order and
chunking; its passes' geometry; and its distance to the ``overlap`` mode, by look-ahead, on the tiny Whispers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsync.whisper import stream_windows as sw
from latentsync.whisper.audio2feature import Audio2Feature
from tests.conftest import GOLDEN_DIR
from tools.synthetic_media import speak
from tools.tiny_models import write_whisper

CHECKPOINT = GOLDEN_DIR / "whisper_tiny_random.pt"


@pytest.fixture(scope="module")
def encoder():
    return Audio2Feature(CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """4.2 s of espeak-ng speech, 16 kHz mono float32."""
    audio = speak("Streaming needs audio features before the whole sentence is spoken. Every frame waits.",
                  tmp_path_factory.mktemp("speech") / "speech.wav")
    return np.resize(audio, int(4.2 * 16000))


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).double().pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt())


def test_a_streams_tokens_equal_the_offline_stream_modes_exactly(encoder, speech):
    offline = encoder.audio2feat(speech, windows="stream")
    assert offline.shape == (len(speech) // 320, 5, 64)
    total = len(speech) // 320
    frames = (len(speech) + 639) // 640
    expected = torch.stack([encoder.get_sliced_feature(offline, k)[0] for k in range(frames)])
    # A live stream asks clip by clip, before the audio has ended, and learns the length only at the end.
    stream = sw.FeatureStream(encoder, lambda a, b: speech[a:b])
    got = []
    for start in range(0, frames, 8):
        clip = list(range(start, min(start + 8, frames)))
        ended = sw.samples_needed(clip[-1] + 1, 0, stream.reach) > len(speech)
        got.append(stream.tokens(clip, len(speech) if ended else None))
        stream.forget_before(start)
    torch.testing.assert_close(torch.cat(got), expected, atol=0, rtol=0)
    assert stream.passes == int(np.ceil(frames / sw.STEP_FRAMES))
    # A run that starts later (after a pause) has its own passes, from its own first frame.
    late = sw.FeatureStream(encoder, lambda a, b: speech[a:b], start_frame=50)
    assert late.tokens([50, 51], None).shape == (2, 50, 64)
    assert late.passes == 1 and total > 110


def test_passes_give_every_feature_once_with_the_look_ahead_and_at_most_30_seconds():
    reach = sw.TokenReach((2, 2))
    for start_frame in (0, 3, 1000):
        covered = []
        for index in range(40):
            step = sw.stream_pass(index, start_frame, reach)
            assert step.sample_stop == (step.stop + sw.LOOKAHEAD_FEATURES) * 320
            assert 0 <= step.sample_stop - step.sample_start <= 480_000 and step.sample_start % 320 == 0
            covered += range(step.first, step.stop)
        assert covered == list(range(max(0, 2 * start_frame - 4), covered[-1] + 1))
        # Pass m completes the tokens of frames start + 8m .. start + 8m + 7 (their last feature is 2k + 5).
        assert covered[-1] == 2 * (start_frame + sw.STEP_FRAMES * 40 - 1) + 5
    # Ended audio: the last passes stop at its last sample and feature.
    step = sw.stream_pass(1, 0, reach, num_samples=7000)
    assert (step.first, step.stop, step.sample_start, step.sample_stop) == (20, 7000 // 320, 0, 7000)
    beyond = sw.stream_pass(3, 0, reach, num_samples=7000)
    assert beyond.first == beyond.stop  # nothing left to give


def test_with_a_look_ahead_covering_the_recording_the_stream_mode_is_the_overlap_mode(encoder, speech):
    far = sw.FeatureStream(encoder, lambda a, b: speech[a:b], lookahead=len(speech) // 320)
    torch.testing.assert_close(far.all_features(len(speech)), encoder.audio2feat(speech, windows="overlap"),
                               atol=0, rtol=0)


def test_distance_to_the_overlap_mode_on_the_transparent_whisper(tmp_path, speech):
    """The transparent Whisper's features are local (no attention, no positions): what is left at the default
    200 ms look-ahead is Whisper's loudness floor, set by the loudest sound heard so far instead of in the
    whole recording. This shows the windows are placed and padded right; it says nothing about how a
    trained Whisper's attention reacts to the missing right context (measure that with tools.stream_features)."""
    transparent = Audio2Feature(write_whisper(tmp_path, transparent=True), device="cpu")
    overlap = transparent.audio2feat(speech, windows="overlap")
    stream = transparent.audio2feat(speech, windows="stream")
    none = sw.FeatureStream(transparent, lambda a, b: speech[a:b], lookahead=0).all_features(len(speech))
    assert _relative_rms(stream, overlap) < 1.5e-2
    assert _relative_rms(none, overlap) > 5e-2  # the look-ahead is what brings it there
    # The loudest sound comes early here; from then on the floors agree and so do the features.
    loudest = int(transparent.log_mel(speech).argmax() % transparent.log_mel(speech).shape[1]) // 2
    later = slice(loudest + 20, len(overlap) - 20)
    assert _relative_rms(stream[later], overlap[later]) < 1e-5

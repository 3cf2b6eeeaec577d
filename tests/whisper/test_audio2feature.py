"""Whisper features against the reference (whisper_features.pt, atol 2e-4) on a tiny random checkpoint."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.whisper.audio2feature import Audio2Feature, chunk_indices, num_chunks, window_plan
from tests.conftest import GOLDEN_DIR, load_golden

CHECKPOINT = GOLDEN_DIR / "whisper_tiny_random.pt"


@pytest.fixture(scope="module")
def golden():
    return load_golden("whisper_features.pt")


@pytest.fixture(scope="module")
def encoder():
    return Audio2Feature(CHECKPOINT, device="cpu", windows="upstream")


@pytest.fixture(scope="module")
def long_waveform(golden):
    """The 31.5 s clip of ``long_waveform_rule``: the short clip tiled, every odd tile reversed and negated."""
    short = np.round(golden["inputs"]["waveform"].numpy().astype(np.float64) * 32768).astype(np.int16)
    n = golden["config"]["long_num_samples"]
    tiles = [short if k % 2 == 0 else -short[::-1] for k in range(n // len(short) + 1)]
    long16 = np.concatenate(tiles)[:n]
    assert hashlib.sha256(long16.tobytes()).hexdigest() == golden["inputs"]["long_waveform_int16_sha256"]
    return long16.astype(np.float32) / 32768


def _close(actual, expected, golden):
    torch.testing.assert_close(actual, expected, atol=golden["atol"], rtol=golden["rtol"])


def test_log_mel(golden, encoder):
    _close(encoder.log_mel(golden["inputs"]["waveform"].numpy()), golden["outputs"]["log_mel"], golden)


def test_audio2feat_and_chunks_match_reference(tmp_path, golden, encoder):
    wav = tmp_path / "clip.wav"
    wav.write_bytes(golden["inputs"]["wav_bytes"].numpy().tobytes())
    feat = encoder.audio2feat(wav)
    assert feat.shape == (165, 5, 64) and feat.dtype == torch.float32
    _close(feat, golden["outputs"]["audio2feat"], golden)
    torch.testing.assert_close(encoder.audio2feat(golden["inputs"]["waveform"].numpy()), feat, atol=0, rtol=0)

    chunks = encoder.feature2chunks(feat, fps=25)
    assert chunks.shape == (84, 50, 64) == (num_chunks(165, 25), 50, 64)
    _close(chunks, golden["outputs"]["feature2chunks"], golden)
    indices = [chunk_indices(i, len(feat)) for i in range(len(chunks))]
    assert indices == golden["outputs"]["chunk_feature_indices"].tolist()
    assert indices[0] == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]

    torch.testing.assert_close(encoder.crop_overlap_audio_window(feat, 5), chunks[5:21], atol=0, rtol=0)


def test_long_clip_upstream_windows(golden, encoder, long_waveform):
    ref = golden["outputs"]["long"]
    assert [(w.mel_start, w.mel_start + w.mel_frames) for w in window_plan(ref["n_mel_frames"], "upstream")] == [
        tuple(s) for s in ref["segments_mel_frames"]
    ]
    feat = encoder.audio2feat(long_waveform)
    assert list(feat.shape) == ref["shape"]
    _close(feat.mean(-1), ref["per_frame_mean"], golden)
    _close(feat.abs().amax(-1), ref["per_frame_absmax"], golden)
    for name in ("seam", "first", "last"):
        key = "features_at_seam" if name == "seam" else f"features_{name}"
        _close(feat[ref[f"{name}_indices"]], ref[key], golden)
    chunks = encoder.feature2chunks(feat)
    assert len(chunks) == ref["n_chunks"]
    _close(chunks[ref["chunk_indices_at_seam"]], ref["chunks_at_seam"], golden)
    assert float(feat.double().sum()) == pytest.approx(ref["features_sum"], rel=1e-6)
    assert float(feat.double().abs().sum()) == pytest.approx(ref["features_abs_sum"], rel=1e-6)


def _jumps(feat: torch.Tensor) -> torch.Tensor:
    """Largest change of any value between consecutive feature frames: (T - 1,)."""
    return (feat[1:] - feat[:-1]).abs().amax(dim=(1, 2))


def test_overlap_windows_remove_the_30s_seam(golden, encoder, long_waveform):
    upstream = encoder.audio2feat(long_waveform)
    overlap = Audio2Feature(CHECKPOINT, device="cpu", windows="overlap").audio2feat(long_waveform)
    assert overlap.shape == upstream.shape

    seam = 1499  # jump from feature 1499 (end of window 0) to 1500 (start of window 1)
    jumps = _jumps(upstream)
    elsewhere = torch.cat([jumps[:seam], jumps[seam + 1 :]]).max()  # changes caused by the audio itself
    assert jumps[seam] > 1.5 * elsewhere
    # Overlap mode: nothing jumps more than the audio makes it, at 30 s or at its own window boundaries.
    assert _jumps(overlap).max() <= elsewhere
    assert _jumps(overlap)[1100:].max() < 0.8 * elsewhere
    mean_overlap, mean_upstream = overlap.mean(-1), upstream.mean(-1)  # per-frame statistics, (T, layers)
    step_overlap = (mean_overlap[seam + 1] - mean_overlap[seam]).abs().max()
    assert step_overlap < 0.5 * (mean_upstream[seam + 1] - mean_upstream[seam]).abs().max()
    # Same per-frame statistics as upstream away from the window boundaries.
    torch.testing.assert_close(overlap[:1150], upstream[:1150], atol=0, rtol=0)


def test_overlap_equals_upstream_up_to_30s(golden):
    overlap = Audio2Feature(CHECKPOINT, device="cpu")  # default windows="overlap"
    _close(overlap.audio2feat(golden["inputs"]["waveform"].numpy()), golden["outputs"]["audio2feat"], golden)
    assert len(window_plan(3000, "overlap")) == 1


def test_window_plans_cover_every_frame_once():
    for mel_frames in (330, 3000, 3001, 3150, 5000, 5001, 9000, 12345):
        for mode in ("overlap", "upstream"):
            total = torch.zeros(mel_frames // 2, dtype=torch.float64)
            for w in window_plan(mel_frames, mode):
                first, weights = w.weights()
                assert first >= w.mel_start // 2 and first + len(weights) <= (w.mel_start + w.mel_frames) // 2
                total[first : first + len(weights)] += weights
            torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_chunk_count_rule():
    assert [num_chunks(n, 25) for n in (165, 1575, 1)] == [84, 789, 2]
    # At 30 fps the centre advances 50/30 features per frame; chunks stop once it passes the end.
    n = num_chunks(100, 30)
    assert int((n - 2) * 50 / 30) <= 100 < int((n - 1) * 50 / 30)
    assert chunk_indices(3, 100, fps=30) == list(range(1, 11))


def test_cache_is_keyed_by_content(tmp_path, golden, monkeypatch):
    encoder = Audio2Feature(CHECKPOINT, device="cpu", cache_dir=tmp_path / "cache")
    wav = tmp_path / "a.wav"
    wav.write_bytes(golden["inputs"]["wav_bytes"].numpy().tobytes())
    first = encoder.audio2feat(wav)

    computed = []
    original = encoder._features
    monkeypatch.setattr(encoder, "_features", lambda audio, windows: computed.append(1) or original(audio, windows))

    renamed = tmp_path / "renamed.wav"
    shutil.move(wav, renamed)
    torch.testing.assert_close(encoder.audio2feat(renamed), first, atol=0, rtol=0)
    assert computed == []  # hit: same bytes under another name

    data = bytearray(renamed.read_bytes())
    data[-200:] = bytes(200)  # silence the last 100 samples
    changed = tmp_path / "a.wav"
    changed.write_bytes(bytes(data))
    encoder.audio2feat(changed)
    assert computed == [1]  # miss: new content under the old name

    upstream = Audio2Feature(CHECKPOINT, device="cpu", windows="upstream", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(upstream, "_features", lambda audio, windows: computed.append(2) or original(audio, windows))
    upstream.audio2feat(renamed)
    assert computed == [1, 2]  # miss: another window mode

    # A call may choose its own window mode and cache folder (one encoder serves runs with different settings).
    per_call = tmp_path / "per_call"
    torch.testing.assert_close(encoder.audio2feat(renamed, windows="upstream", cache_dir=per_call),
                               upstream.audio2feat(renamed), atol=0, rtol=0)
    assert computed == [1, 2, 1] and len(list(per_call.glob("*.pt"))) == 1


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        Audio2Feature(tmp_path / "nope.pt", device="cpu")

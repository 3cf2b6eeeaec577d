"""U-Net data set: the reference-window rule, masks, the mel window, cached Whisper embeddings, skipped files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsync.audio.mel import mel_window
from latentsync.data.unet_dataset import UNetDataset, draw_clip_starts, last_start_with_features
from latentsync.errors import ConfigError
from latentsync.face.mask import load_fixed_mask
from latentsync.media.reader import VideoReader
from latentsync.whisper import audio2feature
from latentsync.whisper.audio2feature import Audio2Feature
from tests.data.synthetic_clips import make_clip
from tools.tiny_models import write_whisper

F = 5  # frames per clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unet_clips")
    broken = folder / "broken_000.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 10)
    return {
        "good": make_clip(folder / "good_000.mp4", seconds=1.2, seed=1),  # 30 frames
        "short": make_clip(folder / "short_000.mp4", seconds=0.56, seed=2),  # 14 frames < 3 * 5
        "broken": str(broken),
        "whisper": write_whisper(folder / "whisper"),
    }


@pytest.mark.parametrize("num_video_frames", [15, 16, 31, 100])
def test_reference_clip_never_overlaps_the_target(num_video_frames):
    starts, refs = set(), set()
    for seed in range(1500):
        start, ref = draw_clip_starts(np.random.default_rng(seed), num_video_frames, F)
        assert 0 <= start <= num_video_frames - F and 0 <= ref <= num_video_frames - F
        assert abs(ref - start) >= F  # the two windows share no frame
        starts.add(start)
        refs.add(ref)
    assert starts == set(range(num_video_frames - F + 1))  # every start is possible
    assert len(refs) > 1


def test_short_videos_and_audio_limits():
    assert draw_clip_starts(np.random.default_rng(0), 3 * F - 1, F) is None
    for seed in range(50):
        start, _ = draw_clip_starts(np.random.default_rng(seed), 40, F, last_start=7)
        assert start <= 7
    # 50 Hz features: frame k's centre is feature 2k, so 20 features cover frames 0..9 -> last start 5.
    assert last_start_with_features(20, F) == 9 - (F - 1)


def test_sample_shapes_masks_and_content(clips, tmp_path):
    encoder = Audio2Feature(clips["whisper"], device="cpu", num_frames=F, cache_dir=tmp_path / "embeds")
    data = UNetDataset([clips["good"]], num_frames=F, resolution=64, audio_encoder=encoder, load_mel=True,
                       mel_cache_dir=str(tmp_path / "mel"), seed=3)
    sample = data[(0, 0)]
    start, ref = int(sample["start_idx"]), int(sample["ref_start_idx"])
    assert abs(start - ref) >= F
    for key in ("gt_pixel_values", "masked_pixel_values", "ref_pixel_values"):
        assert sample[key].shape == (F, 3, 64, 64) and sample[key].dtype == torch.float32
        assert sample[key].min() >= -1 and sample[key].max() <= 1
    mask = load_fixed_mask(64)
    assert sample["masks"].shape == (F, 1, 64, 64) and torch.equal(sample["masks"][2], mask)
    torch.testing.assert_close(sample["masked_pixel_values"], sample["gt_pixel_values"] * mask)
    frames = np.stack(list(VideoReader(clips["good"], fps=25)))
    expected = torch.from_numpy(frames[start : start + F]).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(sample["gt_pixel_values"], expected, atol=1e-6, rtol=0)
    expected_ref = torch.from_numpy(frames[ref : ref + F]).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(sample["ref_pixel_values"], expected_ref, atol=1e-6, rtol=0)

    assert sample["mel"].shape == (1, 80, 16)  # 5 frames = 0.2 s = 16 mel columns
    np.testing.assert_array_equal(sample["mel"].numpy(), mel_window(data.mel(clips["good"]), start, F))
    features = encoder.audio2feat(clips["good"])
    assert torch.equal(sample["audio_embeds"], encoder.crop_overlap_audio_window(features, start))
    assert sample["audio_embeds"].shape == (F, 50, 64)  # 5 layers x 10 feature frames, Whisper width 64


def test_embeddings_are_computed_once_per_video(clips, tmp_path, monkeypatch):
    encoder = Audio2Feature(clips["whisper"], device="cpu", num_frames=F, cache_dir=tmp_path / "embeds")
    calls = []
    real = Audio2Feature._features
    monkeypatch.setattr(Audio2Feature, "_features", lambda self, audio: calls.append(1) or real(self, audio))
    data = UNetDataset([clips["good"]], num_frames=F, resolution=64, audio_encoder=encoder, seed=3)
    first = [data[(0, i)]["audio_embeds"] for i in range(3)]
    again = UNetDataset([clips["good"]], num_frames=F, resolution=64, audio_encoder=encoder, seed=3)
    assert torch.equal(again[(0, 0)]["audio_embeds"], first[0])
    assert len(calls) == 1 and len(list((tmp_path / "embeds").glob("*.pt"))) == 1


def test_draws_are_deterministic(clips):
    a = UNetDataset([clips["good"]], num_frames=F, resolution=64, seed=9)
    b = UNetDataset([clips["good"]], num_frames=F, resolution=64, seed=9, frame_cache_size=4)
    for key in [(0, 0), (1, 0), (2, 0)]:
        sa, sb = a[key], b[key]
        assert int(sa["start_idx"]) == int(sb["start_idx"]) and int(sa["ref_start_idx"]) == int(sb["ref_start_idx"])
        assert torch.equal(sa["gt_pixel_values"], sb["gt_pixel_values"])


def test_broken_and_short_files_are_skipped_with_a_reason(clips, caplog):
    data = UNetDataset([clips["broken"], clips["short"], clips["good"]], num_frames=F, resolution=64, seed=0)
    with caplog.at_level("WARNING"):
        indices = {int(data[(0, i)]["video_index"]) for i in range(6)}
    assert indices == {2}
    assert "too short: 14 frames, need 15" in caplog.text
    assert set(data.skipped) == {clips["broken"], clips["short"]}


def test_embeddings_need_25_fps_and_matching_clip_length(clips):
    encoder = Audio2Feature(clips["whisper"], device="cpu", num_frames=16)
    with pytest.raises(ConfigError, match="16-frame clips"):
        UNetDataset([clips["good"]], num_frames=F, resolution=64, audio_encoder=encoder)
    assert audio2feature.FEATURE_FPS == 50

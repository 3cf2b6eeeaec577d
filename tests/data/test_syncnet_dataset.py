"""SyncNet data set: the window and offset rule, lower half, determinism, caches, skipping bad files."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import torch

from latentsync.audio.mel import last_valid_start_frame, mel_window
from latentsync.data.syncnet_dataset import SyncNetDataset, draw_windows
from latentsync.data.video_dataset import ShardedEpochSampler, gather_video_paths, read_video_paths
from latentsync.errors import ConfigError, LatentSyncError
from latentsync.media.reader import VideoReader
from latentsync.models.syncnet_input import syncnet_visual_input
from tests.data.synthetic_clips import make_clip
from tools.write_fileslist import write_fileslist

N = 16  # frames per window


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    good = make_clip(folder / "good_000.mp4", seconds=2.4, seed=1)  # 60 frames
    other = make_clip(folder / "sub" / "other_000.mp4", seconds=1.6, seed=2)  # 40 frames
    short = make_clip(folder / "short_000.mp4", seconds=1.0, seed=3)  # 25 frames < 2 * 16
    silent = make_clip(folder / "silent_000.mp4", seconds=2.0, seed=4, with_audio=False)
    broken = folder / "broken_000.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    return {"dir": folder, "good": good, "other": other, "short": short, "silent": silent, "broken": str(broken)}


def dataset(paths, **kwargs):
    options = dict(num_frames=N, resolution=64, lower_half=True, seed=7)
    options.update(kwargs)
    return SyncNetDataset(paths, **options)


# --------------------------------------------------------------------------- the sampling rule


@pytest.mark.parametrize("num_video_frames,num_mel", [(32, 200), (60, 192), (60, 120), (200, 640)])
@pytest.mark.parametrize("min_offset", [1, 5])
def test_draw_windows_follows_the_rule(num_video_frames, num_mel, min_offset):
    last_audio = min(num_video_frames - N, last_valid_start_frame(num_mel, N))
    labels, offsets = [], []
    for seed in range(400):
        w = draw_windows(np.random.default_rng(seed), num_video_frames, num_mel, N, min_offset)
        assert 0 <= w.audio_start <= last_audio  # the mel window fits
        assert 0 <= w.frames_start <= num_video_frames - N  # the frames fit
        if w.y == 1:
            assert w.frames_start == w.audio_start
        else:
            assert abs(w.frames_start - w.audio_start) >= min_offset
            offsets.append(w.frames_start - w.audio_start)
        labels.append(w.y)
    assert 0.4 < np.mean(labels) < 0.6  # positives and negatives equally likely
    assert min(offsets) < 0 < max(offsets)  # audio shifted both ways


def test_draw_windows_rejects_short_clips():
    rng = np.random.default_rng(0)
    assert draw_windows(rng, 2 * N - 1, 1000, N) is None  # the reference needs 2 * num_frames frames
    assert draw_windows(rng, 100, 40, N) is None  # audio shorter than one mel window
    assert draw_windows(rng, 2 * N, 1000, N, min_negative_offset=2 * N) is None  # no far-enough negative


# --------------------------------------------------------------------------- samples


def test_sample_shapes_and_content(clips, tmp_path):
    ds = dataset([clips["good"]], mel_cache_dir=str(tmp_path / "mel"))
    decoded = [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in VideoReader(clips["good"])]
    mel = ds.mel(clips["good"])
    assert mel.shape[0] == 80
    for epoch in range(6):
        s = ds[(epoch, 0)]
        assert s["frames"].shape == (N, 3, 32, 64) and s["frames"].dtype == torch.float32
        assert s["audio_samples"].shape == (1, 80, 52)
        assert -1.0 <= s["frames"].min() and s["frames"].max() <= 1.0
        a, f = int(s["audio_start"]), int(s["frames_start"])
        assert (a == f) == bool(s["y"].item() == 1.0)
        np.testing.assert_array_equal(s["audio_samples"].numpy(), mel_window(mel, a, N))
        expected = np.stack(decoded[f : f + N])[:, 32:].transpose(0, 3, 1, 2) / 127.5 - 1.0
        np.testing.assert_allclose(s["frames"].numpy(), expected, atol=1e-6)


def test_lower_half_is_the_bottom_of_the_full_frame(clips):
    full, half = dataset([clips["good"]], lower_half=False), dataset([clips["good"]], lower_half=True)
    a, b = full[(3, 0)], half[(3, 0)]
    assert a["frames"].shape == (N, 3, 64, 64)
    torch.testing.assert_close(a["frames"][:, :, 32:], b["frames"])
    torch.testing.assert_close(a["audio_samples"], b["audio_samples"])


def test_latent_mode_returns_whole_frames(clips):
    ds = dataset([clips["good"]], latent_space=True, lower_half=True)
    assert ds[0]["frames"].shape == (N, 3, 64, 64)  # cut after VAE encoding, not before


def test_draws_are_deterministic_and_cache_independent(clips):
    cached = dataset([clips["good"], clips["other"]], frame_cache_size=4)
    streamed = dataset([clips["good"], clips["other"]], frame_cache_size=0)
    for key in [(0, 0), (0, 1), (5, 1)]:
        a, b = cached[key], streamed[key]
        for name in a:
            torch.testing.assert_close(a[name], b[name])
    draws = {(int(s["audio_start"]), int(s["frames_start"])) for s in (cached[(e, 0)] for e in range(8))}
    assert len(draws) > 1  # epochs draw new windows
    other_seed = dataset([clips["good"], clips["other"]], seed=8)
    assert any(int(other_seed[(e, 0)]["audio_start"]) != int(cached[(e, 0)]["audio_start"]) for e in range(8))


# --------------------------------------------------------------------------- broken files


def test_broken_and_short_files_are_skipped_with_a_reason(clips, caplog):
    paths = [clips["broken"], clips["short"], clips["silent"], clips["good"]]
    ds = dataset(paths)
    with caplog.at_level(logging.WARNING, logger="latentsync.data.syncnet_dataset"):
        samples = [ds[(0, i)] for i in range(len(paths))] + [ds[(1, i)] for i in range(len(paths))]
    assert {int(s["video_index"]) for s in samples} == {3}
    assert set(ds.skipped) == {clips["broken"], clips["short"], clips["silent"]}
    assert "too short" in ds.skipped[clips["short"]]
    assert "unreadable" in ds.skipped[clips["broken"]] and "unreadable" in ds.skipped[clips["silent"]]
    messages = [r.getMessage() for r in caplog.records]
    for name in ("broken", "short", "silent"):  # one warning per file, not per attempt
        assert sum(m.startswith(f"skipping {clips[name]}:") for m in messages) == 1


def test_no_usable_video_raises_instead_of_looping(clips):
    ds = dataset([clips["broken"], clips["short"]], max_attempts=10)
    with pytest.raises(LatentSyncError, match="no usable video"):
        ds[0]


# --------------------------------------------------------------------------- mel cache


def test_mel_cache_is_written_reused_and_repaired(clips, tmp_path):
    cache_dir = tmp_path / "mel"
    ds = dataset([clips["good"]], mel_cache_dir=str(cache_dir))
    mel = ds.mel(clips["good"])
    path = ds.mel_cache_path(clips["good"])
    assert os.path.isfile(path) and os.path.dirname(path) == str(cache_dir)
    np.testing.assert_array_equal(np.load(path), mel)

    fresh = dataset([clips["good"]], mel_cache_dir=str(cache_dir))
    np.save(path, np.zeros((80, 5), np.float32))  # a stale value under the same key is trusted...
    assert fresh.mel(clips["good"]).shape == (80, 5)

    with open(path, "wb") as f:  # ...but an unreadable file is recomputed
        f.write(b"garbage")
    repaired = dataset([clips["good"]], mel_cache_dir=str(cache_dir))
    np.testing.assert_array_equal(repaired.mel(clips["good"]), mel)


def test_mel_cache_key_changes_with_file_and_audio_config(clips, tmp_path):
    # One caching policy with the Whisper features: keyed by the file's bytes, not its path or mtime.
    ds = dataset([clips["good"], clips["other"]], mel_cache_dir=str(tmp_path))
    assert ds.mel_cache_path(clips["good"]) != ds.mel_cache_path(clips["other"])
    copy = tmp_path / "copy" / os.path.basename(clips["good"])
    copy.parent.mkdir()
    copy.write_bytes(open(clips["good"], "rb").read())
    assert ds.mel_cache_path(str(copy)) == ds.mel_cache_path(clips["good"])  # same bytes elsewhere: shared
    os.utime(copy, ns=(1, 1))
    assert ds.mel_cache_path(str(copy)) == ds.mel_cache_path(clips["good"])  # touched, not changed
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert ds.mel_cache_path(str(copy)) != ds.mel_cache_path(clips["good"])  # the file changed
    louder = dict(ds.audio_config, ref_level_db=10)
    assert dataset([clips["good"]], mel_cache_dir=str(tmp_path), audio_config=louder).mel_cache_path(
        clips["good"]
    ) != ds.mel_cache_path(clips["good"])


# --------------------------------------------------------------------------- lists, sampler, model input


def test_video_lists(clips, tmp_path):
    found = gather_video_paths(clips["dir"])
    assert clips["other"] in found and all(p.endswith(".mp4") for p in found)
    listed = write_fileslist(tmp_path / "list.txt", [clips["dir"]])
    assert read_video_paths(str(tmp_path / "list.txt"), "ignored when a list is given") == listed
    assert read_video_paths("", str(clips["dir"])) == found
    with pytest.raises(ConfigError):
        read_video_paths("", "")
    with pytest.raises(ConfigError):
        read_video_paths(str(tmp_path / "missing.txt"), "")


def test_sharded_sampler_splits_epochs_and_resumes():
    size, world = 10, 3
    streams = [ShardedEpochSampler(size, rank, world, seed=1) for rank in range(world)]
    firsts = [[next(it) for _ in range(2 * streams[0].per_rank)] for it in map(iter, streams)]
    for epoch in (0, 1):
        keys = [k for f in firsts for k in f if k[0] == epoch]
        assert {i for _, i in keys} == set(range(size))  # every index, padded by wrapping
        assert len(keys) == world * streams[0].per_rank
    assert [i for _, i in firsts[0][:4]] != [i for _, i in firsts[0][4:8]]  # reshuffled per epoch
    resumed = iter(ShardedEpochSampler(size, 1, world, seed=1, start=3))
    assert [next(resumed) for _ in range(5)] == firsts[1][3:8]


class _FakeLatents:
    def __init__(self, x):
        self.latent_dist = self
        self.x = x

    def sample(self):
        return self.x


class _FakeVAE(torch.nn.Module):
    """Average-pools 8x8 blocks into 4 channels: enough to check shapes and stacking."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4, 3, 1, 1))

    def encode(self, x):
        return _FakeLatents(torch.nn.functional.conv2d(torch.nn.functional.avg_pool2d(x, 8), self.w))


def test_visual_input_stacks_frames_frame_major():
    frames = torch.randn(2, N, 3, 8, 16)
    stacked = syncnet_visual_input(frames, lower_half=True)
    assert stacked.shape == (2, 3 * N, 8, 16)
    torch.testing.assert_close(stacked[:, 3:6], frames[:, 1])  # 'b f c h w -> b (f c) h w'

    latents = syncnet_visual_input(torch.randn(2, N, 3, 64, 64), lower_half=True, vae=_FakeVAE(), scaling_factor=0.5)
    assert latents.shape == (2, 4 * N, 4, 8)  # 8x8 latent, lower half kept

"""Sync step: clips whose audio is shifted by a known number of frames are detected and corrected.

The fast test scores with ``MouthLoudnessSyncNet``, a TEST DOUBLE of a trained StableSyncNet (same
call signature and unit-vector outputs; its "embeddings" are the mouth darkness and the loudness of
each frame of the window), so that the offset search, the sign convention and the audio shift are
checked in CI. The slow test uses a real StableSyncNet trained by tools/prove_syncnet.sh.
"""

from __future__ import annotations

import glob
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.media.audio import SAMPLE_RATE
from preprocess import sync_av
from preprocess.runner import Item
from preprocess.settings import Settings
from tests.conftest import REPO_ROOT
from tests.processes import run_group
from tests.preprocess.raw_set import speech
from tools.synthetic_media import loudness_envelope, write_talking_video

SAMPLES_PER_FRAME = SAMPLE_RATE // 25


class MouthLoudnessSyncNet(torch.nn.Module):
    """TEST DOUBLE, not a trained model: per-frame mean darkness of the face window against per-frame
    mel energy of the audio window, each centred and L2-normalised, like StableSyncNet's outputs."""

    def __init__(self, num_frames: int) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the scorer a device and dtype

    def forward(self, image_sequences: torch.Tensor, audio_sequences: torch.Tensor):
        b = image_sequences.shape[0]
        darkness = -image_sequences.reshape(b, self.num_frames, -1).mean(-1)
        columns = audio_sequences.mean(dim=2).flatten(1)  # (b, mel columns)
        loudness = torch.stack([c.mean(-1) for c in torch.tensor_split(columns, self.num_frames, dim=1)], 1)
        centre = lambda x: F.normalize(x - x.mean(1, keepdim=True), dim=1)  # noqa: E731
        return centre(darkness), centre(loudness)


def shifted_clip(path: str, delay_frames: int, seconds: float = 8.0, seed: int = 7) -> None:
    """A talking head whose mouth follows the speech, with the audio track delayed by ``delay_frames``
    (negative: advanced), written independently of the code under test."""
    audio = speech(seconds, seed)
    shift = delay_frames * SAMPLES_PER_FRAME
    if shift >= 0:
        moved = np.concatenate([np.zeros(shift, np.float32), audio[: len(audio) - shift]])
    else:
        moved = np.concatenate([audio[-shift:], np.zeros(-shift, np.float32)])
    write_talking_video(path, moved, size=(128, 128), motion="none", mouth_envelope=loudness_envelope(audio))


@pytest.fixture
def double_scorer(tmp_path, monkeypatch):
    config = tmp_path / "double.yaml"
    data = {"num_frames": 5, "resolution": 64, "lower_half": False, "latent_space": False,
            "video_fps": 25, "audio_sample_rate": SAMPLE_RATE}
    config.write_text(yaml.safe_dump({"model": {}, "data": data}))
    monkeypatch.setattr(StableSyncNet, "from_checkpoint", staticmethod(lambda *a, **k: MouthLoudnessSyncNet(5)))
    sync_av.scorer.cache_clear()
    yield Settings(output_dir=str(tmp_path / "out"), temp_dir=str(tmp_path), sync_scorer="stable",
                   syncnet_config=str(config), syncnet_ckpt="test-double", sync_conf_threshold=0.05, device="cpu")
    sync_av.scorer.cache_clear()


@pytest.mark.parametrize("delay", [3, -4, 0])
def test_known_shift_is_detected_and_corrected(double_scorer, tmp_path, delay):
    clip = str(tmp_path / "clip.mp4")
    shifted_clip(clip, delay)
    offset, confidence = sync_av.scorer(double_scorer)(clip)
    # The audio lags by `delay` frames: the offset (k > 0 = audio leads) is -delay.
    assert abs(offset + delay) <= 1, (offset, delay)
    [line] = sync_av.sync_clip(Item("clip.mp4", clip, {"duration_out": 8.0}), double_scorer)
    assert line["kept"] and line["scores"]["offset"] == offset
    corrected, _ = sync_av.scorer(double_scorer)(line["output"])
    assert abs(corrected) <= 1, corrected


def test_far_out_of_sync_clip_is_dropped(double_scorer, tmp_path):
    clip = str(tmp_path / "far.mp4")
    shifted_clip(clip, 10)
    [line] = sync_av.sync_clip(Item("far.mp4", clip, {"duration_out": 8.0}), double_scorer)
    assert not line["kept"] and "|offset| over 6" in line["reason"] and line["scores"]["offset"] <= -9


def test_shift_audio_pads_with_silence_and_keeps_the_length():
    audio = np.arange(1, 3201, dtype=np.float32)
    later = sync_av.shift_audio(audio, 2)
    assert len(later) == 3200 and (later[:1280] == 0).all() and later[1280] == 1
    earlier = sync_av.shift_audio(audio, -1)
    assert len(earlier) == 3200 and earlier[0] == 641 and (earlier[-640:] == 0).all()


@pytest.mark.slow
def test_proof_stablesyncnet_finds_known_shifts(tmp_path):
    """Train the SyncNet proof's StableSyncNet (tools/prove_syncnet.sh, shortened), then score shifted clips."""
    work = tmp_path / "proof"
    result = run_group(["bash", "tools/prove_syncnet.sh", str(work), "run.max_train_minutes=8"], timeout=1800,
                       cwd=REPO_ROOT, env={**os.environ, "NUM_TRAIN": "32", "NUM_VAL": "8", "EVAL_SAMPLES": "256"})
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = sorted(glob.glob(str(work / "train" / "checkpoints" / "checkpoint-*.pt")))[-1]
    val = sorted(glob.glob(str(work / "data" / "high_visual_quality" / "val" / "*.mp4")))
    settings = Settings(output_dir=str(tmp_path / "out"), temp_dir=str(tmp_path), sync_scorer="stable",
                        syncnet_config=str(REPO_ROOT / "configs/syncnet/syncnet_tiny_cpu.yaml"), syncnet_ckpt=checkpoint,
                        sync_conf_threshold=0.0, device="cpu")
    sync_av.scorer.cache_clear()
    for k, delay in enumerate([4, -3]):
        clip = str(tmp_path / f"shifted{k}.mp4")
        shift_existing(val[k], clip, delay)
        offset, _ = sync_av.scorer(settings)(clip)
        assert abs(offset + delay) <= 1, (offset, delay)
        [line] = sync_av.sync_clip(Item(f"shifted{k}.mp4", clip, {}), settings)
        corrected, _ = sync_av.scorer(settings)(line["output"])
        assert abs(corrected) <= 1, corrected
    sync_av.scorer.cache_clear()


def shift_existing(src: str, dst: str, delay_frames: int) -> None:
    """Delay (or advance) the audio of a clip with ffmpeg's own filters, independently of sync_av."""
    ms = abs(delay_frames) * 40
    audio_filter = f"adelay={ms}" if delay_frames > 0 else f"atrim=start={ms / 1000},asetpts=PTS-STARTPTS,apad"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", src, "-af", audio_filter, "-c:v", "copy",
                    "-shortest", dst], check=True)


def test_classic_scorer_is_the_evaluation_metric(processed, tmp_path):
    """The default scorer is the evaluation's score_video (weights: golden-procedure stand-ins)."""
    from latentsync.errors import LatentSyncError
    from latentsync.metrics.sync_confidence import SyncScorer, score_video
    from latentsync.models.s3fd import S3FD, S3FDDetector
    from latentsync.models.syncnet_classic import ClassicSyncNet
    from preprocess.executors import run_item
    from tools.eval_models import write_official_file

    syncnet_path, s3fd_path = tmp_path / "syncnet_v2.model", tmp_path / "sfd_face.pth"
    write_official_file(syncnet_path, "syncnet_v2")
    write_official_file(s3fd_path, "s3fd")
    clip = os.path.join(processed["output_dir"], "high_visual_quality", "cut_000.mp4")
    device = torch.device("cpu")
    try:
        result = score_video(clip, SyncScorer(ClassicSyncNet.from_file(syncnet_path), device),
                             S3FDDetector(S3FD.from_file(s3fd_path), device))
        expected = {"offset": result.offset, "confidence": round(result.confidence, 4)}
    except LatentSyncError as err:
        expected = f"error: {err}".splitlines()[0][:300]
    settings = Settings(output_dir=str(tmp_path / "out"), temp_dir=str(tmp_path), classic_syncnet_path=str(syncnet_path),
                        s3fd_path=str(s3fd_path), sync_conf_threshold=-1e9, max_offset=15, device="cpu")
    sync_av.scorer.cache_clear()
    [line], failure = run_item(sync_av.sync_clip, Item("cut_000.mp4", clip, {}), settings)
    sync_av.scorer.cache_clear()
    assert failure is None
    if isinstance(expected, dict):
        assert line["kept"] and line["scores"] == expected
    else:
        assert not line["kept"] and line["reason"] == expected

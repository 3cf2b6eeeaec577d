"""The sync pipeline recovers a known audio shift when SyncNet's embeddings are replaced by an oracle.

A trained classic SyncNet is out of reach on a CPU here (see the README); this test checks
everything around it on a synthetic clip whose mouth follows its audio: face tracks, crops, the
audio segment of each track, the 5-frame / 20-MFCC windows, the offset search and its sign.
The oracle embeds a video window as its 5 frames' crop darkness (an open mouth is dark) and an
audio window as its 5 frames' log energy (MFCC c0), each standardised over the track.
"""

import numpy as np
import pytest
import torch

from latentsync.metrics.face_tracks import TrackSettings
from latentsync.metrics.sync_confidence import MFCC_PER_FRAME, SAMPLES_PER_FRAME, SyncScorer, mfcc, score_video
from latentsync.models.s3fd import S3FD, S3FDDetector
from latentsync.utils.media import mux_audio
from tools.synthetic_media import burst_audio
from tools.synthetic_media import write_talking_video, write_wav

SECONDS = 4.0


def _standardise(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((x - x.mean()) / (x.std() + 1e-6)).float()


class OracleScorer(SyncScorer):
    def video_features(self, crops, count):
        darkness = np.array([255.0 - crop.mean() for crop in crops])[: count + 4]
        return _standardise(np.stack([darkness[i : i + 5] for i in range(count)]))

    def audio_features(self, audio, count):
        energy = mfcc(audio)[0]
        per_frame = energy[: len(energy) // MFCC_PER_FRAME * MFCC_PER_FRAME].reshape(-1, MFCC_PER_FRAME).mean(1)
        return _standardise(np.stack([per_frame[i : i + 5] for i in range(count)]))


@pytest.fixture(scope="module")
def speech_and_video(auxiliary, tmp_path_factory):
    root = tmp_path_factory.mktemp("shifted")
    audio = burst_audio(SECONDS, seed=5)
    write_talking_video(root / "silent.mp4", audio, size=(256, 256), motion="none", with_audio=False)
    return root, audio


@pytest.mark.parametrize("k", [0, 3, -4])
def test_audio_delayed_by_k_frames_gives_offset_minus_k(speech_and_video, auxiliary, k):
    root, audio = speech_and_video
    shift = k * SAMPLES_PER_FRAME
    shifted = np.concatenate([np.zeros(shift, np.float32), audio])[: len(audio)] if k >= 0 else \
        np.concatenate([audio[-shift:], np.zeros(-shift, np.float32)])
    write_wav(root / f"shift{k}.wav", shifted)
    video = root / f"shift{k}.mp4"
    mux_audio(root / "silent.mp4", root / f"shift{k}.wav", video)
    detector = S3FDDetector(S3FD.from_file(auxiliary / "sfd_face.pth"), torch.device("cpu"))
    scorer = OracleScorer(model=None, device=torch.device("cpu"))
    result = score_video(str(video), scorer, detector, TrackSettings(conf_threshold=0.52, min_track=20))
    assert [r.offset for r in result.results] == [-k] * len(result.results)  # the reference's sign: audio lags -> negative
    assert result.offset == -k and result.confidence > 0.5

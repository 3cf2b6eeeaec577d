"""The sync pipeline recovers a known audio shift when SyncNet's embeddings are replaced by an oracle.

A trained classic SyncNet is out of reach on a CPU here (see the README); this test checks
everything around it on a synthetic clip whose mouth follows its audio: face tracks, crops, the
audio segment of each track, the 5-frame / 20-MFCC windows, the offset search and its sign, on
the clean route and through upstream's media round trips.
The oracle embeds a video window as its 5 frames' crop darkness (an open mouth is dark) and an
audio window as its 5 frames' log energy (MFCC c0), each standardised over the track.
"""

import numpy as np
import pytest
import torch

from latentsync.metrics.face_tracks import TrackSettings
from latentsync.metrics.sync_confidence import MFCC_PER_FRAME, SAMPLES_PER_FRAME, SyncScorer, mfcc, score_video
from latentsync.models.s3fd import S3FD, S3FDDetector
from latentsync.media.mux import mux_audio
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


def _shifted_video(root, audio, k: int):
    shift = k * SAMPLES_PER_FRAME
    shifted = np.concatenate([np.zeros(shift, np.float32), audio])[: len(audio)] if k >= 0 else \
        np.concatenate([audio[-shift:], np.zeros(-shift, np.float32)])
    write_wav(root / f"shift{k}.wav", shifted)
    video = root / f"shift{k}.mp4"
    if not video.exists():
        mux_audio(root / "silent.mp4", root / f"shift{k}.wav", video)
    return video


def _score(video, auxiliary, protocol: str):
    detector = S3FDDetector(S3FD.from_file(auxiliary / "sfd_face.pth"), torch.device("cpu"))
    scorer = OracleScorer(model=None, device=torch.device("cpu"))
    return score_video(str(video), scorer, detector, TrackSettings(conf_threshold=0.52, min_track=20), protocol=protocol)


@pytest.mark.parametrize("k", [0, 3, -4])
def test_audio_delayed_by_k_frames_gives_offset_minus_k(speech_and_video, auxiliary, k):
    root, audio = speech_and_video
    result = _score(_shifted_video(root, audio, k), auxiliary, "clean")
    assert [r.offset for r in result.results] == [-k] * len(result.results)  # the reference's sign: audio lags -> negative
    assert result.offset == -k and result.confidence > 0.5


@pytest.mark.parametrize("k", [0, 3, -4])
def test_upstream_round_trips_keep_audio_and_crops_aligned(speech_and_video, auxiliary, k):
    # The re-encodes and the AAC muxes must not shift the audio against the crops. Only the face-sized
    # track is checked: the other one (a 2020 px box around the whole 256 px frame) shows the mouth so
    # small that the JPEG noise of upstream's route drowns the oracle's darkness signal.
    root, audio = speech_and_video
    result = _score(_shifted_video(root, audio, k), auxiliary, "upstream")
    face = [r for t, r in zip(result.tracks, result.results) if (t.boxes[:, 2] - t.boxes[:, 0]).max() < 400]
    assert len(face) == 1 and face[0].offset == -k and face[0].confidence > 0.5

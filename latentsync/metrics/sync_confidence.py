"""SyncNet confidence (LSE-C), minimum distance (LSE-D) and audio-visual offset.

The metric of Chung & Zisserman (2016) as LatentSync and Wav2Lip report it: 5-frame windows of
224 px face crops and 0.2 s MFCC windows are embedded by the classic SyncNet; for every video
window the distance to the audio windows shifted by -vshift..+vshift frames is measured; the
offset is the shift whose mean distance is smallest, LSE-D that mean distance, and LSE-C the
median of the mean distances minus their minimum. Which pixels and samples are scored (upstream's
lossy media route by default, or the clean one) is the protocol of :mod:`latentsync.metrics.sync_routes`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import python_speech_features
import torch
import torch.nn.functional as F
from scipy import signal

from latentsync.errors import NoFaceError
from latentsync.metrics.face_tracks import FaceTrack, TrackSettings, find_tracks, track_crops
from latentsync.metrics.sync_routes import DEFAULT_PROTOCOL, SyncRoute
from latentsync.models.s3fd import S3FDDetector
from latentsync.models.syncnet_classic import LIP_FRAMES, MFCC_STEPS, ClassicSyncNet

VSHIFT = 15  # frames searched either side of zero (+-0.6 s at 25 fps)
MFCC_PER_FRAME = 4  # MFCC steps (100 Hz) per video frame (25 fps)
SAMPLES_PER_FRAME = 640  # audio samples (16 kHz) per video frame (25 fps)
FRAME_CONF_KERNEL = 9  # median filter of the per-frame confidence curve
INT16_SCALE = 32768.0  # the reference computes MFCCs on raw int16 sample values


@dataclass(frozen=True)
class SyncResult:
    """One face track's verdict: ``offset`` k in frames, LSE-D (``min_dist``), LSE-C (``confidence``).

    k > 0: video window i matches audio window i - k (the audio leads); k < 0: the audio lags.
    """

    offset: int
    min_dist: float
    confidence: float
    mean_dists: np.ndarray  # (2 * vshift + 1,) mean distance per shift, shift -vshift first
    frame_dists: np.ndarray  # (N,) distance of each window at the chosen shift
    frame_confidence: np.ndarray  # (N,) median(mean_dists) - frame_dists, median-filtered


def mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(13, T) MFCCs at 100 Hz of float audio in [-1, 1] (scaled to int16 values, as the reference reads wavs)."""
    return python_speech_features.mfcc(np.asarray(audio, np.float64) * INT16_SCALE, sample_rate).T.astype(np.float32)


def shifted_distances(video_feats: torch.Tensor, audio_feats: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(N, 2*vshift+1): distance of video window i to audio window i + j - vshift (zero-padded at the ends)."""
    padded = F.pad(audio_feats, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # (N, 2v+1, D)
    return F.pairwise_distance(video_feats[:, None, :].expand_as(windows), windows, eps=1e-6)


def offset_confidence(dists: torch.Tensor, vshift: int = VSHIFT) -> SyncResult:
    """Offset, LSE-D and LSE-C from the (N, 2*vshift+1) distance table, as the reference computes them."""
    mean_dists = dists.mean(0)
    min_dist, best = torch.min(mean_dists, 0)
    median = torch.median(mean_dists)
    frame_dists = dists[:, best].numpy()
    frame_conf = median.item() - frame_dists
    return SyncResult(
        offset=int(vshift - best.item()),
        min_dist=float(min_dist),
        confidence=float(median - min_dist),
        mean_dists=mean_dists.numpy(),
        frame_dists=frame_dists,
        frame_confidence=signal.medfilt(frame_conf, FRAME_CONF_KERNEL) if len(frame_conf) else frame_conf,
    )


def window_count(num_frames: int, num_samples: int) -> int:
    """Number of 5-frame windows the reference scores: min(frames, samples // 640) - 5 (it drops one)."""
    return max(0, min(num_frames, num_samples // SAMPLES_PER_FRAME) - LIP_FRAMES)


class SyncScorer:
    """Embeds a track's crops and audio with the classic SyncNet in batches, streaming the crops."""

    def __init__(self, model: ClassicSyncNet, device: torch.device, batch_size: int = 20, vshift: int = VSHIFT):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.vshift = vshift

    @torch.no_grad()
    def _embed_lips(self, windows: list[np.ndarray]) -> torch.Tensor:
        # windows: 5 x (224, 224, 3) RGB uint8 -> (B, 3, 5, 224, 224) BGR 0-255 float
        batch = torch.from_numpy(np.stack(windows)[..., ::-1].copy()).to(self.device)
        return self.model.forward_lip(batch.permute(0, 4, 1, 2, 3).float()).float().cpu()

    @torch.no_grad()
    def _embed_audio(self, coefficients: np.ndarray, starts: range) -> torch.Tensor:
        windows = [coefficients[:, MFCC_PER_FRAME * i : MFCC_PER_FRAME * i + MFCC_STEPS] for i in starts]
        batch = torch.from_numpy(np.stack(windows)[:, None]).to(self.device)
        return self.model.forward_aud(batch).float().cpu()

    def video_features(self, crops: Iterable[np.ndarray], count: int) -> torch.Tensor:
        """(count, 1024) embeddings of the first ``count`` 5-frame windows of ``crops`` (224 px RGB)."""
        recent: deque[np.ndarray] = deque(maxlen=LIP_FRAMES)
        pending: list[np.ndarray] = []
        feats = []
        for crop in _limited(crops, count + LIP_FRAMES - 1):
            recent.append(crop)
            if len(recent) == LIP_FRAMES:
                pending.append(np.stack(list(recent)))  # (5, 224, 224, 3)
                if len(pending) == self.batch_size:
                    feats.append(self._embed_lips(pending))
                    pending = []
        if pending:
            feats.append(self._embed_lips(pending))
        return torch.cat(feats) if feats else torch.zeros(0, 1024)

    def audio_features(self, audio: np.ndarray, count: int) -> torch.Tensor:
        """(count, 1024) embeddings of the first ``count`` 0.2 s MFCC windows (one per video frame)."""
        coefficients = mfcc(audio)
        feats = [self._embed_audio(coefficients, range(i, min(count, i + self.batch_size)))
                 for i in range(0, count, self.batch_size)]
        return torch.cat(feats) if feats else torch.zeros(0, 1024)

    def score(self, crops: Iterable[np.ndarray], num_frames: int, audio: np.ndarray) -> SyncResult:
        """Offset, LSE-D and LSE-C of one face track: its 224 px crops and its audio (16 kHz float)."""
        count = window_count(num_frames, len(audio))
        if count <= 0:
            raise ValueError(f"a track needs more than {LIP_FRAMES} frames and as much audio, got {num_frames} frames")
        video = self.video_features(crops, count)
        audio_feats = self.audio_features(audio, count)
        return offset_confidence(shifted_distances(video, audio_feats, self.vshift), self.vshift)


@dataclass(frozen=True)
class VideoSync:
    """A video's verdict over its face tracks: offset (mean, truncated as the reference does), LSE-D and LSE-C means."""

    offset: int
    min_dist: float
    confidence: float
    tracks: list[FaceTrack]
    results: list[SyncResult]
    protocol: str = DEFAULT_PROTOCOL


def score_video(
    video_path: str, scorer: SyncScorer, detector: S3FDDetector, settings: TrackSettings = TrackSettings(),
    progress: bool = False, protocol: str = DEFAULT_PROTOCOL,
) -> VideoSync:
    """Detect and track faces, then score every track against the video's own audio track.

    ``protocol`` (``upstream`` or ``clean``) says which media route the frames and audio take.
    """
    with SyncRoute(video_path, protocol) as route:
        tracks = find_tracks(route.frames(), detector, settings, progress)
        if not tracks:
            raise NoFaceError(
                f"no face track of more than {settings.min_track} frames and {settings.min_face_size:g} px in {video_path}"
            )
        results = []
        for index, track in enumerate(tracks):
            segment = route.audio[track.start * SAMPLES_PER_FRAME : track.end * SAMPLES_PER_FRAME]
            crops = track_crops(route.frames(), track, settings)
            results.append(scorer.score(*route.track_media(crops, len(track.frames), segment, f"{index:05d}")))
    return VideoSync(
        offset=int(np.mean([r.offset for r in results])),
        min_dist=float(np.mean([r.min_dist for r in results])),
        confidence=float(np.mean([r.confidence for r in results])),
        tracks=tracks,
        results=results,
        protocol=protocol,
    )


def _limited(items: Iterable[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    for index, item in enumerate(items):
        if index >= limit:
            return
        yield item

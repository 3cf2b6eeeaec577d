"""Audio-visual offset and confidence of a face clip judged by a trained StableSyncNet.

The same search as the classic SyncNet metric (:mod:`latentsync.metrics.sync_confidence`): every
window of ``num_frames`` frames is compared with the mel windows shifted by -vshift..+vshift
frames, and :func:`~latentsync.metrics.sync_confidence.offset_confidence` turns the distance table
into an offset (same sign: k > 0 means the audio leads the picture by k frames) and a confidence.
Distances are between unit embeddings (0..2), so confidences are on a smaller scale than the
classic SyncNet's.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from latentsync.data.syncnet_dataset import SyncNetDataset
from latentsync.errors import ConfigError
from latentsync.metrics.sync_confidence import VSHIFT, SyncResult, offset_confidence, shifted_distances
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.audio.mel import last_valid_start_frame, mel_window


class StableSyncScorer:
    """Embeds every window of a clip with a StableSyncNet and searches the offset.

    ``data`` is the ``data:`` section of the SyncNet's training config; frames and mel columns
    come from :class:`~latentsync.data.syncnet_dataset.SyncNetDataset`, exactly as in training.
    """

    def __init__(self, model: StableSyncNet, data: Mapping, batch_size: int = 32, vshift: int = VSHIFT) -> None:
        if data.get("latent_space"):
            raise ConfigError(
                "the StableSyncNet sync scorer supports pixel-space SyncNets only (data.latent_space false)"
            )
        self.model = model
        self.data = data
        self.batch_size = batch_size
        self.vshift = vshift

    @torch.no_grad()
    def _embed(self, dataset: SyncNetDataset, frames: np.ndarray, mel: np.ndarray, starts: range):
        param = next(self.model.parameters())
        n, video, audio = dataset.num_frames, [], []
        for i in range(0, len(starts), self.batch_size):
            batch = starts[i : i + self.batch_size]
            clips = np.stack([frames[s : s + n] for s in batch])  # (b, f, h, w, 3) uint8
            pixels = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).flatten(1, 2).float() / 127.5 - 1
            mels = [mel_window(mel, s, n, dataset.video_fps, dataset.mel_fps) for s in batch]
            windows = torch.from_numpy(np.stack(mels))
            v, a = self.model(pixels.to(param.device, param.dtype), windows.to(param.device, param.dtype))
            video.append(v.float().cpu())
            audio.append(a.float().cpu())
        return torch.cat(video), torch.cat(audio)

    def score(self, video_path: str) -> SyncResult:
        """Offset (frames), minimum mean distance and confidence of one face clip with its own audio."""
        dataset = SyncNetDataset.from_config(self.data, video_paths=[video_path])
        frames, mel = dataset.decode(video_path, None), dataset.mel(video_path)
        n = dataset.num_frames
        last = min(len(frames) - n, last_valid_start_frame(mel.shape[1], n, dataset.video_fps, dataset.mel_fps))
        if last < 0:
            raise ValueError(f"{video_path}: too short for {n}-frame windows")
        video, audio = self._embed(dataset, frames, mel, range(last + 1))
        return offset_confidence(shifted_distances(video, audio, self.vshift), self.vshift)

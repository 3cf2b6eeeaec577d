"""Audio-visual offset and confidence of a face clip judged by a trained StableSyncNet.

The same search as the classic SyncNet metric (:mod:`latentsync.metrics.sync_confidence`): every
window of ``num_frames`` frames is compared with the mel windows shifted by -vshift..+vshift
frames, and :func:`~latentsync.metrics.sync_confidence.offset_confidence` turns the distance table
into an offset (same sign: k > 0 means the audio leads the picture by k frames) and a confidence.
Distances are between unit embeddings (0..2), so confidences are on a smaller scale than the
classic SyncNet's. Frames are prepared as the SyncNet data set prepares them (pixel mode).
"""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np
import torch

from latentsync.errors import ConfigError
from latentsync.metrics.sync_confidence import VSHIFT, SyncResult, offset_confidence, shifted_distances
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.utils.audio import last_valid_start_frame, load_audio_config, mel_window, melspectrogram
from latentsync.utils.media import VideoReader, load_audio


class StableSyncScorer:
    """Embeds every window of a clip with a StableSyncNet and searches the offset.

    ``data`` is the ``data:`` section of the SyncNet's training config (num_frames, resolution,
    lower_half, video_fps, audio_sample_rate).
    """

    def __init__(self, model: StableSyncNet, data: Mapping, batch_size: int = 32, vshift: int = VSHIFT) -> None:
        if data.get("latent_space"):
            raise ConfigError("the StableSyncNet sync scorer supports pixel-space SyncNets only (data.latent_space false)")
        self.model = model
        self.num_frames = int(data["num_frames"])
        self.resolution = int(data["resolution"])
        self.lower_half = bool(data["lower_half"])
        self.fps = float(data.get("video_fps", 25))
        self.sample_rate = int(data.get("audio_sample_rate", 16000))
        self.audio_config = dict(load_audio_config(data.get("audio_config", "configs/audio.yaml")))
        self.mel_fps = self.sample_rate / self.audio_config["hop_size"]
        self.batch_size = batch_size
        self.vshift = vshift

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        size = self.resolution
        if frame.shape[:2] != (size, size):
            smaller = frame.shape[0] > size or frame.shape[1] > size
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_CUBIC)
        return frame[size // 2 :] if self.lower_half else frame

    @torch.no_grad()
    def _embed(self, frames: np.ndarray, mel: np.ndarray, starts: range) -> tuple[torch.Tensor, torch.Tensor]:
        param = next(self.model.parameters())
        video, audio = [], []
        for i in range(0, len(starts), self.batch_size):
            batch = starts[i : i + self.batch_size]
            clips = np.stack([frames[s : s + self.num_frames] for s in batch])  # (b, f, h, w, 3)
            pixels = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).flatten(1, 2).float() / 127.5 - 1
            mels = torch.from_numpy(np.stack([mel_window(mel, s, self.num_frames, self.fps, self.mel_fps) for s in batch]))
            v, a = self.model(pixels.to(param.device, param.dtype), mels.to(param.device, param.dtype))
            video.append(v.float().cpu())
            audio.append(a.float().cpu())
        return torch.cat(video), torch.cat(audio)

    def score(self, video_path: str) -> SyncResult:
        """Offset (frames), minimum mean distance and confidence of one face clip with its own audio."""
        frames = np.stack([self._frame(f) for f in VideoReader(video_path, fps=self.fps)])
        mel = melspectrogram(load_audio(video_path, self.sample_rate), self.audio_config).astype(np.float32)
        last = min(len(frames) - self.num_frames, last_valid_start_frame(mel.shape[1], self.num_frames, self.fps, self.mel_fps))
        if last < 0:
            raise ValueError(f"{video_path}: too short for {self.num_frames}-frame windows")
        video, audio = self._embed(frames, mel, range(last + 1))
        return offset_confidence(shifted_distances(video, audio, self.vshift), self.vshift)

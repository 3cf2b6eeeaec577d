"""SyncNet training pairs: a window of face frames and a mel window, in sync (y=1) or not (y=0).

Sampling rule (the reference's): pick a video, an audio window start ``s`` uniformly such that
``num_frames`` frames and their 52 (for 16 frames) mel columns fit, and a second start ``s'``
of the same video with ``|s' - s| >= min_negative_offset`` (1 in the reference: any other
start). The mel window always comes from ``s``; with probability 1/2 the frames come from ``s``
(positive) and otherwise from ``s'``, i.e. the audio is shifted by ``s - s'`` frames away from
the picture (negative). Videos shorter than ``2 * num_frames`` frames are skipped.

Inputs are preprocessed face videos (25 fps, 16 kHz audio, face-aligned squares). Pixel mode
returns frames resized to ``resolution`` in [-1, 1], cut to the lower half when configured.
Latent mode (``latent_space: true``) returns whole frames: the trainer encodes them with the
Stable Diffusion VAE (``vae_path``, with the VAE's own scaling) and only then keeps the lower
half, see :func:`latentsync.models.syncnet_input.syncnet_visual_input`.

Video lists, seeded draws, skip-and-redraw of broken or too-short files and the frame and mel
caches come from :class:`latentsync.data.video_dataset.VideoClipDataset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from latentsync.audio.mel import MEL_FPS, last_valid_start_frame, load_audio_config, mel_window
from latentsync.data.video_dataset import VideoClipDataset, read_video_paths
from latentsync.errors import SkipVideo
from latentsync.paths import AUDIO_CONFIG


@dataclass(frozen=True)
class Windows:
    """Start frames of one draw: the audio window, the frames shown, and the label."""

    audio_start: int
    frames_start: int
    y: int  # 1 in sync, 0 shifted


def draw_windows(
    rng: np.random.Generator,
    num_video_frames: int,
    num_mel_columns: int,
    num_frames: int = 16,
    min_negative_offset: int = 1,
    fps: float = 25,
    mel_fps: float = MEL_FPS,
) -> Windows | None:
    """Draw the audio start, the negative start and the label; None if the clip is too short for the rule."""
    if num_video_frames < 2 * num_frames:
        return None
    last_frame_start = num_video_frames - num_frames
    last_audio_start = min(last_frame_start, last_valid_start_frame(num_mel_columns, num_frames, fps, mel_fps))
    if last_audio_start < 0:
        return None
    starts = np.arange(last_frame_start + 1)
    for _ in range(8):  # a start with no far-enough partner is rare; redraw it
        audio_start = int(rng.integers(last_audio_start + 1))
        others = starts[np.abs(starts - audio_start) >= max(1, min_negative_offset)]
        if len(others):
            break
    else:
        return None
    shifted = int(others[rng.integers(len(others))])
    y = int(rng.integers(2))
    return Windows(audio_start, audio_start if y else shifted, y)


class SyncNetDataset(VideoClipDataset):
    """(frames, mel window, label) samples from face videos; index with ``i`` or ``(epoch, i)``.

    A sample is a dict: ``frames`` float32 (num_frames, 3, H, W) in [-1, 1] (H = resolution
    or half of it), ``audio_samples`` float32 (1, num_mels, mel columns), ``y`` float32 (1,),
    and the provenance ``video_index``, ``audio_start``, ``frames_start`` (int64).
    """

    def __init__(
        self,
        video_paths: Sequence[str],
        *,
        num_frames: int = 16,
        resolution: int = 256,
        lower_half: bool = True,
        latent_space: bool = False,
        video_fps: float = 25,
        audio_sample_rate: int = 16000,
        audio_config: Mapping | None = None,
        mel_cache_dir: str | None = None,
        min_negative_offset: int = 1,
        frame_cache_size: int = 0,
        seed: int = 0,
        max_attempts: int = 50,
    ):
        super().__init__(
            video_paths,
            resolution=resolution,
            crop_lower_half=lower_half and not latent_space,  # latents are cut after encoding
            video_fps=video_fps,
            audio_sample_rate=audio_sample_rate,
            audio_config=audio_config,
            mel_cache_dir=mel_cache_dir,
            frame_cache_size=frame_cache_size,
            seed=seed,
            max_attempts=max_attempts,
        )
        self.num_frames = num_frames
        self.min_negative_offset = min_negative_offset

    @classmethod
    def from_config(
        cls, data: Mapping, split: str = "train", seed: int = 0, video_paths: Sequence[str] | None = None
    ) -> "SyncNetDataset":
        """Build from the ``data`` section of a SyncNet config, on ``video_paths`` or else the ``split``'s list/folder."""
        paths = video_paths or read_video_paths(data.get(f"{split}_fileslist"), data.get(f"{split}_data_dir"))
        audio_config = load_audio_config(data.get("audio_config", AUDIO_CONFIG))
        return cls(
            paths,
            num_frames=data["num_frames"],
            resolution=data["resolution"],
            lower_half=data["lower_half"],
            latent_space=data["latent_space"],
            video_fps=data["video_fps"],
            audio_sample_rate=data["audio_sample_rate"],
            audio_config=audio_config,
            mel_cache_dir=data.get("audio_mel_cache_dir") or None,
            min_negative_offset=data.get("min_negative_offset", 1),
            frame_cache_size=data.get("frame_cache_size", 0),
            seed=seed,
        )

    def _sample(self, rng: np.random.Generator, video_index: int) -> dict[str, torch.Tensor]:
        path = self.video_paths[video_index]
        mel = self.mel(path)
        num_video_frames, frames = self.video(path)
        windows = draw_windows(
            rng, num_video_frames, mel.shape[1], self.num_frames, self.min_negative_offset, self.video_fps, self.mel_fps
        )
        if windows is None:
            raise SkipVideo(
                f"too short: {num_video_frames} frames and {mel.shape[1]} mel columns, "
                f"need {2 * self.num_frames} frames and a full mel window"
            )
        audio = mel_window(mel, windows.audio_start, self.num_frames, self.video_fps, self.mel_fps)
        if frames is None:
            frames = self.decode(path, windows.frames_start + self.num_frames)
        clip = frames[windows.frames_start : windows.frames_start + self.num_frames]
        if len(clip) != self.num_frames:
            raise SkipVideo(f"decoded {len(frames)} frames where the header promised {num_video_frames}")
        # In numpy: small element-wise work is slower through torch's thread pool on a busy CPU.
        pixels = np.ascontiguousarray(clip.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
        return {
            "frames": torch.from_numpy(pixels),
            "audio_samples": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "y": torch.tensor([float(windows.y)]),
            "video_index": torch.tensor(video_index),
            "audio_start": torch.tensor(windows.audio_start),
            "frames_start": torch.tensor(windows.frames_start),
        }

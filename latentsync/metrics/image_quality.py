"""hyperIQA quality of a video with the reference's protocol (the data filter keeps videos >= 40).

First, middle and last frame; centre crop 224 px without resizing; ImageNet normalisation; the
mean of the three hyperIQA scores (KonIQ scale, 0-100 for the official weights).
"""

from __future__ import annotations

import numpy as np
import torch

from latentsync.errors import MediaError
from latentsync.models.hyperiqa import HyperNet, quality_scores
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader

CROP = 224  # px
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAMES_DESCRIPTION = f"first, middle and last frame at the video's own rate, centre crop {CROP} px"


def probe_frames(video_path: str) -> np.ndarray:
    """(3, H, W, 3) uint8: the first, middle and last frame, decoded in one pass."""
    reader = VideoReader(video_path, fps=probe_video(video_path).fps)  # its own frames, none dropped
    wanted = {0: None, len(reader) // 2: None, len(reader) - 1: None}
    for index, frame in enumerate(reader):
        if index in wanted:
            wanted[index] = frame
    if any(frame is None for frame in wanted.values()):
        raise MediaError(f"could not decode the first, middle and last frame of {video_path}")
    return np.stack([wanted[0], wanted[len(reader) // 2], wanted[len(reader) - 1]])


def center_crop_normalise(frames: np.ndarray, size: int = CROP) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) ImageNet-normalised, cropped at the centre (no resizing).

    Like torchvision's CenterCrop, a side smaller than ``size`` is zero-padded (before normalisation).
    """
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    height, width = x.shape[2:]
    if height < size or width < size:
        pad_h, pad_w = max(0, size - height), max(0, size - width)
        x = torch.nn.functional.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        height, width = x.shape[2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    x = x[:, :, top : top + size, left : left + size]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def video_quality(model: HyperNet, video_path: str) -> float:
    """Mean hyperIQA score of the first, middle and last frame of a video."""
    device = next(model.parameters()).device
    images = center_crop_normalise(probe_frames(video_path)).to(device)
    return float(quality_scores(model, images).mean())

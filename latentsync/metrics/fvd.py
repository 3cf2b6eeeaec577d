"""Fréchet Video Distance with the I3D TorchScript network the field uses (``i3d_torchscript.pt``).

Each video gives one 16-frame clip of 224 px face crops: its own frames 20-35 at its own frame rate
(no resampling: a 30 fps video gives its frames 20-35 too), faces found by MediaPipe's short-range
detector and resized with area interpolation, as the reference does. Protocols (the I3D's input range):

* ``stylegan-v`` (default, the standard one of StyleGAN-V and common_metrics_on_video_quality):
  frames scaled to [-1, 1], the I3D's own rescaling off;
* ``latentsync``: frames in [0, 1] with rescaling off, as LatentSync's evaluation feeds them
  (its FVDs are not comparable with the standard ones).
"""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import torch

from latentsync.errors import CheckpointError, MediaError, NoFaceError
from latentsync.metrics.model_files import require_model_file
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader

PROTOCOLS = ("stylegan-v", "latentsync")
DEFAULT_PROTOCOL = "stylegan-v"
CLIP_FRAMES = 16  # frames per clip
CLIP_START = 20  # first frame of the clip (earlier when the video is shorter)
CLIP_SIZE = 224  # px, side of the I3D input
I3D_DIM = 400  # feature width of the I3D (logits before the softmax)


def load_i3d(path: str | os.PathLike, device: torch.device) -> torch.jit.ScriptModule:
    """The I3D TorchScript file, in eval mode on ``device``."""
    path = require_model_file(path)
    try:
        with warnings.catch_warnings():  # the field's I3D ships only as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # RuntimeError for non-TorchScript files, among others
        raise CheckpointError(f"{path} is not a TorchScript I3D model ({str(exc).splitlines()[0]})") from exc
    return model.eval().to(device)


def i3d_input(clips: torch.Tensor, protocol: str) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 clips -> (B, 3, T, H, W) float in the protocol's range."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown FVD protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    x = clips.permute(0, 4, 1, 2, 3).float() / 255
    return x * 2 - 1 if protocol == "stylegan-v" else x


@torch.no_grad()
def i3d_features(model: torch.nn.Module, clips: torch.Tensor, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
    """(B, 400) float64 I3D features of (B, T, 224, 224, 3) uint8 clips."""
    device = next(iter(model.parameters()), torch.zeros(0)).device
    x = i3d_input(clips, protocol).to(device)
    return model(x, rescale=False, resize=False, return_features=True).double().cpu().numpy()


class FaceCropper:
    """First face of MediaPipe's short-range detector (confidence 0.5), cropped and resized to 224 px."""

    def __init__(self, size: int = CLIP_SIZE, min_score: float = 0.5):
        from mediapipe.python.solutions import face_detection

        self.size = size
        self._detector = face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score)

    def close(self) -> None:
        self._detector.close()

    def crop(self, frame: np.ndarray) -> np.ndarray | None:
        """The (size, size, 3) face crop of an RGB frame, or None without a face."""
        result = self._detector.process(frame)
        if not result.detections:
            return None
        height, width = frame.shape[:2]
        box = result.detections[0].location_data.relative_bounding_box
        x1, y1 = max(0, int(box.xmin * width)), max(0, int(box.ymin * height))
        x2 = min(width, x1 + int(box.width * width))
        y2 = min(height, y1 + int(box.height * height))
        if x2 <= x1 or y2 <= y1:
            return None
        return cv2.resize(frame[y1:y2, x1:x2], (self.size, self.size), interpolation=cv2.INTER_AREA)


def clip_description(face_crop: bool) -> str:
    """Which frames and pixels :func:`face_clip` takes, for result tables."""
    pixels = "MediaPipe face crops" if face_crop else "whole frames"
    last = CLIP_START + CLIP_FRAMES - 1
    return f"frames {CLIP_START}-{last} at the video's own rate, {pixels} resized to {CLIP_SIZE} px"


def face_clip(video_path: str, cropper: FaceCropper | None, frames: int = CLIP_FRAMES, start: int = CLIP_START) -> np.ndarray:
    """(frames, 224, 224, 3) uint8 clip of the video's own frames ``start``.. at its own frame rate, as the
    reference indexes them; a video shorter than ``start + frames`` gives its last ``frames`` frames
    (the reference cannot score it).

    Without a ``cropper`` whole frames are resized (for videos that are face crops already).
    """
    reader = VideoReader(video_path, fps=probe_video(video_path).fps)  # its own frames, none dropped or repeated
    if len(reader) < frames:
        raise MediaError(f"{video_path} has {len(reader)} frames, FVD needs {frames}")
    start = min(start, len(reader) - frames)
    clip = []
    for index, frame in enumerate(reader):
        if index < start:
            continue
        if cropper is None:
            face = cv2.resize(frame, (CLIP_SIZE, CLIP_SIZE), interpolation=cv2.INTER_AREA)
        else:
            face = cropper.crop(frame)
            if face is None:
                raise NoFaceError(f"no face in frame {index} of {video_path}")
        clip.append(face)
        if len(clip) == frames:
            break
    return np.stack(clip)

"""Face tracks for the SyncNet metric: S3FD detections, shot cuts, IoU tracking and 224 px crops.

Settings default to those of the reference (syncnet_python's pipeline as LatentSync runs it):
detection at 1/4 scale with confidence 0.9, consecutive boxes joined when IoU > 0.5 with up to
25 missed frames, tracks longer than 50 frames inside one shot, mean face size over 100 px,
box size and centre median-filtered over 13 frames, crops padded by 0.4 of the face size.
Frames arrive as iterables of 25 fps RGB frames (whichever protocol decoded them, see
:mod:`latentsync.metrics.sync_routes`) and are read twice, one at a time (detect, then crop): memory
does not grow with length.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, fields
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from latentsync.cli import number
from latentsync.face.tracking import box_iou
from latentsync.models.s3fd import S3FDDetector

logger = logging.getLogger(__name__)

CROP_SIZE = 224  # side of the crops SyncNet sees
PAD_VALUE = 110  # grey level outside the frame when a crop overhangs it
SCENE_WIDTH = 256  # frames are shrunk to this width for shot detection


@dataclass(frozen=True)
class TrackSettings:
    """Detection, shot, tracking and cropping settings; the defaults are the reference's (see ``_SETTING_HELP``)."""

    conf_threshold: float = 0.9
    detect_scale: float = 0.25
    iou_threshold: float = 0.5
    min_track: int = 50
    num_failed_det: int = 25
    min_face_size: float = 100.0
    crop_scale: float = 0.4
    smooth_kernel: int = 13
    scene_threshold: float = 27.0
    min_scene_len: int = 15

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--name`` flag per setting, defaulting to the reference's value."""
        group = parser.add_argument_group("face detection and tracking (defaults: the reference's)")
        for field in fields(cls):
            low, high, kind = _SETTING_RANGE[field.name]
            group.add_argument(f"--{field.name}", type=number(type(field.default), low, high, odd=kind == "odd",
                                                               above=kind == "above"), default=field.default,
                               help=_SETTING_HELP[field.name] + " (default: %(default)s)")


_SETTING_HELP = {
    "conf_threshold": "S3FD score a face needs",
    "detect_scale": "frames are resized by this factor before detection",
    "iou_threshold": "consecutive boxes of one track overlap more than this",
    "min_track": "a track needs more detections than this, in a shot at least this long",
    "num_failed_det": "frames a track may go without a detection",
    "min_face_size": "px, mean width or height of a kept track",
    "crop_scale": "crop padding around the face, in face sizes",
    "smooth_kernel": "median filter length of the box size and centre (odd)",
    "scene_threshold": "mean HSV change between frames that cuts a shot (0: no shot detection)",
    "min_scene_len": "frames, shortest shot",
}


# (low, high, "above": low excluded | "odd": odd integers only) of each setting's flag
_SETTING_RANGE = {
    "conf_threshold": (0, 1, ""),
    "detect_scale": (0, 1, "above"),
    "iou_threshold": (0, 1, ""),
    "min_track": (0, None, ""),
    "num_failed_det": (0, None, ""),
    "min_face_size": (0, None, ""),
    "crop_scale": (0, None, ""),
    "smooth_kernel": (1, None, "odd"),
    "scene_threshold": (0, None, ""),
    "min_scene_len": (1, None, ""),
}


def track_settings(args: argparse.Namespace) -> TrackSettings:
    """The settings given by :meth:`TrackSettings.add_arguments` flags."""
    return TrackSettings(**{field.name: getattr(args, field.name) for field in fields(TrackSettings)})


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through consecutive frames: ``frames`` (T,) indices, ``boxes`` (T, 4) x1 y1 x2 y2 px."""

    frames: np.ndarray
    boxes: np.ndarray

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        """One past the last frame."""
        return int(self.frames[-1]) + 1


def content_change(previous_hsv: np.ndarray, hsv: np.ndarray) -> float:
    """Mean absolute change of hue, saturation and value between two HSV frames, averaged."""
    diff = np.abs(hsv.astype(np.int16) - previous_hsv.astype(np.int16))
    return float(diff.reshape(-1, 3).mean(0).mean())


def detect_faces_and_shots(
    frames: Iterable[np.ndarray], detector: S3FDDetector, settings: TrackSettings, progress: bool = False
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Per-frame face boxes ((N, 5) x1 y1 x2 y2 score) and shots ([start, end) frame ranges) of RGB frames."""
    faces: list[np.ndarray] = []
    cuts = [0]
    previous = None
    for index, frame in enumerate(tqdm(frames, desc="detect", unit="frame", disable=not progress, leave=False)):
        faces.append(detector.detect(frame, settings.conf_threshold, settings.detect_scale))
        if settings.scene_threshold > 0:
            width = min(SCENE_WIDTH, frame.shape[1])
            small = cv2.resize(frame, (width, max(1, round(frame.shape[0] * width / frame.shape[1]))), interpolation=cv2.INTER_AREA)
            hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
            if previous is not None and content_change(previous, hsv) >= settings.scene_threshold \
                    and index - cuts[-1] >= settings.min_scene_len:
                cuts.append(index)
            previous = hsv
    shots = list(zip(cuts, cuts[1:] + [len(faces)]))
    return faces, shots


def track_faces(faces: Sequence[np.ndarray], first_frame: int, settings: TrackSettings) -> list[FaceTrack]:
    """Greedy IoU tracks over one shot's detections (``faces[k]`` belongs to frame ``first_frame + k``)."""
    remaining = [list(frame_faces) for frame_faces in faces]
    tracks = []
    while True:
        frames: list[int] = []
        boxes: list[np.ndarray] = []
        for offset, frame_faces in enumerate(remaining):
            index = first_frame + offset
            if frames and index - frames[-1] > settings.num_failed_det:
                break
            for k, face in enumerate(frame_faces):
                if not frames or box_iou(face[:4], boxes[-1]) > settings.iou_threshold:
                    frames.append(index)
                    boxes.append(np.asarray(face[:4], np.float64))
                    del frame_faces[k]
                    break
        if not frames:
            return tracks
        if len(frames) <= settings.min_track:
            continue
        all_frames = np.arange(frames[0], frames[-1] + 1)
        detected = np.stack(boxes)
        filled = np.stack([np.interp(all_frames, frames, detected[:, j]) for j in range(4)], 1)
        size = max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1]))
        if size > settings.min_face_size:
            tracks.append(FaceTrack(all_frames, filled))


def find_tracks(
    frames: Iterable[np.ndarray], detector: S3FDDetector, settings: TrackSettings, progress: bool = False
) -> list[FaceTrack]:
    """Every face track of a video's frames, shot by shot (shots shorter than ``min_track`` are skipped)."""
    faces, shots = detect_faces_and_shots(frames, detector, settings, progress)
    tracks = []
    for start, end in shots:
        if end - start >= settings.min_track:
            tracks += track_faces(faces[start:end], start, settings)
    return tracks


def crop_geometry(track: FaceTrack, kernel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median-filtered half size, centre x and centre y of a track's boxes, per frame."""
    boxes = track.boxes
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return tuple(signal.medfilt(v, kernel_size=kernel) for v in (half, cx, cy))


def crop_face(frame: np.ndarray, half: float, cx: float, cy: float, crop_scale: float, size: int = CROP_SIZE) -> np.ndarray:
    """The reference's crop: from ``half`` above the centre to (1 + 2 crop_scale) ``half`` below, resized to ``size``.

    The reference pads the whole frame by (1 + 2 crop_scale) ``half`` with grey 110 and cuts the crop from
    that; the same pixels are copied here without building the padded frame.
    """
    pad = int(half * (1 + 2 * crop_scale))
    my, mx = cy + pad, cx + pad  # centre in padded-frame coordinates
    top, bottom = int(my - half), int(my + half * (1 + 2 * crop_scale))
    left, right = int(mx - half * (1 + crop_scale)), int(mx + half * (1 + crop_scale))
    height, width = frame.shape[:2]
    # numpy slicing clips the window to the padded frame (2 pad larger than the frame each way)
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, height + 2 * pad), min(right, width + 2 * pad)
    face = np.full((max(bottom - top, 0), max(right - left, 0), 3), PAD_VALUE, np.uint8)
    y0, y1 = max(top, pad), min(bottom, pad + height)
    x0, x1 = max(left, pad), min(right, pad + width)
    if y1 > y0 and x1 > x0:
        face[y0 - top : y1 - top, x0 - left : x1 - left] = frame[y0 - pad : y1 - pad, x0 - pad : x1 - pad]
    return cv2.resize(face, (size, size))


def track_crops(frames: Iterable[np.ndarray], track: FaceTrack, settings: TrackSettings) -> Iterator[np.ndarray]:
    """The track's 224 px crops of the video's frames (read from the first), one frame at a time."""
    half, cx, cy = crop_geometry(track, settings.smooth_kernel)
    for index, frame in enumerate(frames):
        if index >= track.end:
            return
        if index >= track.start:
            k = index - track.start
            yield crop_face(frame, half[k], cx[k], cy[k], settings.crop_scale)

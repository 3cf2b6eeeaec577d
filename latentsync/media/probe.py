"""What a video or still image holds (frame rate, frame count, size, rotation, audio), read with PyAV
from its header and first frame, without decoding it all."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

from latentsync.errors import MediaError
from latentsync.utils.files import require_file


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns from a container without decoding it all."""

    fps: float  # source frames per second (1 frame of 1/25 s for still images)
    num_frames: int  # frame count from the header, or estimated from the duration
    width: int
    height: int
    has_audio: bool
    duration: float  # seconds covered by the video frames
    is_image: bool = False
    rotation: int = 0  # degrees counter-clockwise the stored pixels are turned to display (0, 90, 180, 270)


def _is_image_format(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def open_input(path: str) -> av.container.InputContainer:
    """``path`` opened for reading with PyAV; a file it cannot open is a MediaError naming it."""
    try:
        return av.open(path, "r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"cannot open video {path!r}: {err}") from err


def _stream_timing(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[Fraction, int]:
    """(fps, frame count) of a video stream from its header, as exact fractions where possible."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise MediaError(f"video stream has no frame rate: {container.name!r}")
    rate = Fraction(rate)
    count = stream.frames
    if not count:
        if stream.duration is not None and stream.time_base is not None:
            seconds = Fraction(stream.duration) * Fraction(stream.time_base)
        elif container.duration is not None:
            seconds = Fraction(container.duration, av.time_base)
        else:
            seconds = Fraction(0)
        count = round(seconds * rate)
    return rate, int(count)


def _display_rotation(path: str) -> int:
    """Degrees (0, 90, 180, 270) counter-clockwise to turn the stored pixels to display them, from the
    first frame's display matrix (phones store pixels sideways and record how to turn them)."""
    try:
        with av.open(path, "r") as container:
            for frame in container.decode(video=0):
                return round((frame.rotation or 0) / 90) * 90 % 360
    except (av.FFmpegError, UnicodeDecodeError, ValueError):
        pass  # undecodable: reading the frames reports it
    return 0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count, display size, duration, rotation and audio presence of a video or still image."""
    path = require_file(path, "video")
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError(f"file has no video stream: {path!r}")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        if _is_image_format(container):
            return VideoInfo(25.0, 1, stream.width, stream.height, has_audio, 1 / 25, is_image=True)
        rate, count = _stream_timing(container, stream)
        if count <= 0:
            # No count and no duration in the header (raw streams): count packets, no decoding.
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError as err:
                raise MediaError(f"cannot read video {path!r}: {err}") from err
            if count == 0:
                raise MediaError(f"video has no frames: {path!r}")
        width, height = stream.width, stream.height
    if not width or not height:
        raise MediaError(f"video stream has no frame size: {path!r}")
    rotation = _display_rotation(path)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(float(rate), count, width, height, has_audio, float(count / rate), rotation=rotation)

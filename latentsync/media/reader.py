"""Reading a video as upright RGB frames resampled to a target frame rate, lazily, by timestamp, in
the colours ffmpeg decodes (the stream's own matrix and range: :mod:`latentsync.media.colour`)."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from latentsync.errors import MediaError
from latentsync.media.colour import rgb_conversion
from latentsync.media.probe import open_input, probe_video

_TIME_EPS = 1e-6  # seconds; absorbs float error when comparing frame times


class VideoReader:
    """Lazily decode RGB uint8 (H, W, 3) frames resampled to ``fps`` by timestamp, upright.

    Output frame k is the source frame on screen at time k / fps, counted from the first
    frame (frames are dropped or repeated). Colours are ffmpeg's: each frame is converted with the
    matrix and range it is tagged with (untagged: BT.601, limited range). Nothing beyond the
    current frame is held in memory.
    ``len()`` is ceil(duration * fps) from the header, exact for constant-frame-rate
    files; iteration always yields exactly ``len()`` frames (a short stream repeats its
    last frame, a long one is cut). A still image is a one-frame video.
    Iterating again starts again from the first frame.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = os.fspath(path)
        self.fps = fps
        self.info = probe_video(self.path)
        if self.info.is_image:
            self._length = 1
        else:
            duration = Fraction(self.info.num_frames) / Fraction(self.info.fps).limit_denominator(100000)
            # Tolerate float error in the target rate (e.g. 29.97) before rounding up.
            self._length = max(1, math.ceil(duration * Fraction(fps).limit_denominator(100000) - Fraction(1, 1000)))

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    def __len__(self) -> int:
        return self._length

    def _source_frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(seconds since the first frame, frame) in presentation order."""
        with open_input(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = None
            try:
                for index, frame in enumerate(container.decode(stream)):
                    # Streams without timestamps (raw H.264) are taken at their nominal rate.
                    t = frame.time if frame.time is not None else index / self.info.fps
                    if start is None:
                        start = t
                    yield t - start, frame
            except av.FFmpegError as err:
                raise MediaError(f"cannot decode video {self.path!r}: {err}") from err

    def _rgb(self, frame: av.VideoFrame, size: tuple[int, int] | None, reformatter: VideoReformatter) -> np.ndarray:
        """The frame as RGB uint8 in its tagged colours, turned upright as its display matrix asks;
        ``size`` = (width, height) of the upright frame to scale to while converting, or None."""
        width = height = None
        if size is not None:
            width, height = size if self.info.rotation in (0, 180) else size[::-1]
        rgb = reformatter.reformat(frame, width, height, "rgb24", **rgb_conversion(frame)).to_ndarray()
        if self.info.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, self.info.rotation // 90))
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, max_side: int | None = None) -> Iterator[np.ndarray]:
        """The frames (as iterating does); with ``max_side``, shrunk so their longer side is at most
        that many pixels, in the same pass as the colour conversion (cheaper than resizing after)."""
        size = None
        if max_side is not None and max(self.width, self.height) > max_side:
            factor = max_side / max(self.width, self.height)
            size = (max(2, round(self.width * factor)), max(2, round(self.height * factor)))
        reformatter = VideoReformatter()  # one scaler for the whole pass, set up once
        emitted = 0
        shown: av.VideoFrame | None = None  # source frame on screen at the next output time
        shown_rgb: np.ndarray | None = None  # its RGB array, converted only if it is emitted
        for t, frame in self._source_frames():
            if shown is None:
                shown = frame  # a stream that starts late shows its first frame from time 0
            # Output times before this frame's start still show the previous frame.
            while emitted < self._length and emitted / self.fps < t - _TIME_EPS:
                if shown_rgb is None:
                    shown_rgb = self._rgb(shown, size, reformatter)
                    yield shown_rgb
                else:  # a repeated frame: a copy, so callers may edit frames in place
                    yield shown_rgb.copy()
                emitted += 1
            if emitted >= self._length:
                return
            shown, shown_rgb = frame, None
        if shown is None:
            raise MediaError(f"video has no decodable frames: {self.path!r}")
        while emitted < self._length:
            if shown_rgb is None:
                shown_rgb = self._rgb(shown, size, reformatter)
                yield shown_rgb
            else:
                yield shown_rgb.copy()
            emitted += 1

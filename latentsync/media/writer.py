"""Encoding RGB frames to H.264 one at a time, published atomically when the last frame is in, in
colours players read back as written (a tagged matrix: :mod:`latentsync.media.colour`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from latentsync.errors import MediaError
from latentsync.media.colour import ColourStandard, output_standard, rgb_to_i420
from latentsync.utils.files import atomic_output

DEFAULT_CRF = 18  # libx264 quality: visually lossless for talking heads


@dataclass(frozen=True)
class VideoEncoding:
    """libx264 settings of a written video: ``crf`` (quality, lower is better), ``preset`` (speed),
    encoder ``threads`` (0: one per core), ``tune`` (e.g. "zerolatency": no frame held back) and
    ``gop`` (frames between keyframes; None: libx264's default)."""

    crf: int = DEFAULT_CRF
    preset: str = "medium"
    threads: int = 0
    tune: str | None = None
    gop: int | None = None


# For throughput: "superfast" at CRF 16 is ~3x faster than "medium" at 18 on 1080x1920 frames, with
# the same PSNR against the source (~43 dB); the files are ~2x larger (benchmarks/RESULTS.md).
FAST_ENCODING = VideoEncoding(crf=16, preset="superfast")
# The slow, small, high-quality setting (``--archival``).
ARCHIVAL_ENCODING = VideoEncoding(crf=DEFAULT_CRF, preset="slow")


def add_h264_stream(container: av.container.OutputContainer, fps: Fraction, width: int, height: int,
                    encoding: VideoEncoding) -> tuple[av.video.stream.VideoStream, ColourStandard]:
    """An H.264 yuv420p stream of ``container`` for ``width`` x ``height`` RGB frames (odd sizes padded to
    even), tagged and converted with the standard of its size; returns it with that standard."""
    standard = output_standard(width + width % 2, height + height % 2)
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = width + width % 2, height + height % 2
    stream.pix_fmt = "yuv420p"
    options = {"crf": str(encoding.crf), "preset": encoding.preset}
    if encoding.tune:
        options["tune"] = encoding.tune
    stream.options = options
    context = stream.codec_context
    context.thread_count = encoding.threads
    if encoding.gop:
        context.gop_size = encoding.gop
    context.colorspace = context.color_primaries = context.color_trc = standard.code
    context.color_range = 1  # limited (MPEG) range
    return stream, standard


def rgb_video_frame(frame: np.ndarray, width: int, height: int, standard: ColourStandard) -> av.VideoFrame:
    """One (height, width, 3) uint8 RGB frame as a tagged yuv420p frame (odd sizes padded by edge pixels)."""
    frame = np.asarray(frame)
    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
        raise ValueError(f"expected a ({height}, {width}, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    # OpenCV's vectorised transforms convert with the tagged matrix ~3x faster than swscale would.
    yuv = rgb_to_i420(np.ascontiguousarray(frame), standard)
    video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    video_frame.colorspace, video_frame.color_range = standard.code, 1
    return video_frame


class VideoWriter:
    """Encode RGB uint8 frames one at a time to H.264 (yuv420p, libx264 with ``encoding``) and publish
    the file atomically.

    Use as a context manager; the file appears at ``path`` only when the block exits
    without an exception. yuv420p needs even sizes, so an odd width or height is padded
    by one pixel, repeating the last column/row (the stored size is then even). The stream is
    tagged BT.709 (HD) or BT.601 (SD), limited range, and converted with that matrix.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        encoding: VideoEncoding = FAST_ENCODING,
    ):
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.path = os.fspath(path)
        self.fps = Fraction(fps).limit_denominator(100000)
        self.width, self.height = width, height
        self.encoding = encoding
        self.standard = output_standard(width + width % 2, height + height % 2)  # matrix and tags
        self.frames_written = 0
        self._atomic = None
        self._container = None
        self._stream = None

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_output(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(tmp, "w")
            self._stream, _ = add_h264_stream(self._container, self.fps, self.width, self.height,
                                                          self.encoding)
        except BaseException as err:
            self._abort(err)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._stream is None:
            raise RuntimeError("VideoWriter.write called outside its `with` block")
        video_frame = rgb_video_frame(frame, self.width, self.height, self.standard)
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
            return
        try:
            if self.frames_written == 0:
                raise MediaError(f"no frames were written to {self.path!r}")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        except BaseException as err:
            self._abort(err)
            raise
        self._atomic.__exit__(None, None, None)

    def _abort(self, err: BaseException) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:
                pass
            self._container = None
        self._atomic.__exit__(type(err), err, err.__traceback__)

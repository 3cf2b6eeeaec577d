"""Media I/O: decode audio, read and write video frames, mux audio into video.

This is the one place that talks to ffmpeg (as an argument list, never a shell string)
and to PyAV. Every failure a user can cause (missing file, undecodable data, missing
stream, empty media) becomes a :class:`~latentsync.errors.MediaError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import cv2
import numpy as np

from latentsync.errors import MediaError, OutputError, StoppedBySignal
from latentsync.utils.atomic import TEMP_PREFIX, atomic_output, owned_prefix

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz, what every audio model in this project expects
INT16_SCALE = 32768.0  # s16le sample -> float in [-1, 1)
DEFAULT_CRF = 18  # libx264 quality: visually lossless for talking heads
_TIME_EPS = 1e-6  # seconds; absorbs float error when comparing frame times
_STDERR_TAIL = 2000  # characters of ffmpeg's stderr kept in error messages
_FFMPEG_SIGNALLED = 255  # ffmpeg's exit status after SIGINT or SIGTERM (it stops cleanly, then exits with this)
OUTPUT_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv")  # containers that hold H.264 + AAC


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the system one if on PATH, else the one bundled with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MediaError("ffmpeg not found: install it (apt install ffmpeg) or `pip install imageio-ffmpeg`") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_path(path: str | os.PathLike) -> str:
    # An absolute path behind the file: protocol cannot be mistaken for an option ("-x.wav")
    # or for another protocol ("http:..."), whatever characters the name holds.
    return "file:" + os.path.abspath(os.fspath(path))


def require_file(path: str | os.PathLike, what: str) -> str:
    """``path`` if it is a regular file; else a MediaError saying what it is instead (missing, a folder, a device)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MediaError(f"{what} path is a folder, not a file: {path!r}")
    if os.path.exists(path) and not os.path.isfile(path):
        # A device (/dev/zero), a pipe or a socket: ffmpeg would read it forever or block.
        raise MediaError(f"{what} path is not a regular file: {path!r}")
    if not os.path.isfile(path):
        raise MediaError(f"{what} file not found: {path!r}")
    return path


def _run_ffmpeg(args: list[str], path: str | os.PathLike, action: str) -> bytes:
    """Run ffmpeg with ``args`` and return stdout; a failure becomes a MediaError with its stderr."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", *args]
    logger.debug("running %s", cmd)
    try:
        done = subprocess.run(cmd, capture_output=True, check=True)
    except subprocess.CalledProcessError as err:
        if err.returncode < 0 or err.returncode == _FFMPEG_SIGNALLED:
            raise StoppedBySignal(f"ffmpeg was stopped by a signal while it read {os.fspath(path)!r}") from err
        stderr = err.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        if "matches no streams" in stderr:  # a "-map 0:a:0" on a file without audio
            raise MediaError(f"file has no audio stream: {os.fspath(path)!r}") from err
        raise MediaError(f"ffmpeg could not {action} {os.fspath(path)!r}:\n{stderr}") from err
    return done.stdout


# --------------------------------------------------------------------------- audio


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any file (wav, mp3, a video...) to mono float32 in [-1, 1].

    ffmpeg resamples to ``sample_rate`` and writes 16-bit PCM, which is divided by 32768,
    exactly as openai-whisper loads audio. Returns shape (samples,).
    """
    path = require_file(path, "audio")
    raw = _run_ffmpeg(
        [
            "-threads", "0",
            "-i", _ffmpeg_path(path),
            "-map", "0:a:0",  # fails clearly when there is no audio stream
            "-f", "s16le",
            "-ac", "1",
            "-acodec", "pcm_s16le",
            "-ar", str(sample_rate),
            "-",
        ],
        path,
        "decode audio from",
    )
    if len(raw) < 2:
        raise MediaError(f"audio file has no samples: {path!r}")
    return np.frombuffer(raw, np.int16).astype(np.float32) / INT16_SCALE


# --------------------------------------------------------------------------- video probing


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


def _open_input(path: str) -> av.container.InputContainer:
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
    with _open_input(path) as container:
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


# --------------------------------------------------------------------------- reading


class VideoReader:
    """Lazily decode RGB uint8 (H, W, 3) frames resampled to ``fps`` by timestamp, upright.

    Output frame k is the source frame on screen at time k / fps, counted from the first
    frame (frames are dropped or repeated). Nothing beyond the current frame is held in memory.
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
        with _open_input(self.path) as container:
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

    def _rgb(self, frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
        """The frame as RGB uint8, turned upright as its display matrix asks; ``size`` = (width, height)
        of the upright frame to scale to while converting, or None."""
        if size is not None:
            width, height = size if self.info.rotation in (0, 180) else size[::-1]
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        else:
            rgb = frame.to_ndarray(format="rgb24")
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
        emitted = 0
        shown: av.VideoFrame | None = None  # source frame on screen at the next output time
        shown_rgb: np.ndarray | None = None  # its RGB array, converted only if it is emitted
        for t, frame in self._source_frames():
            if shown is None:
                shown = frame  # a stream that starts late shows its first frame from time 0
            # Output times before this frame's start still show the previous frame.
            while emitted < self._length and emitted / self.fps < t - _TIME_EPS:
                if shown_rgb is None:
                    shown_rgb = self._rgb(shown, size)
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
                shown_rgb = self._rgb(shown, size)
                yield shown_rgb
            else:
                yield shown_rgb.copy()
            emitted += 1


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class VideoEncoding:
    """libx264 settings of a written video: ``crf`` (quality, lower is better), ``preset`` (speed)
    and encoder ``threads`` (0: one per core)."""

    crf: int = DEFAULT_CRF
    preset: str = "medium"
    threads: int = 0


# For throughput: "superfast" at CRF 16 is ~3x faster than "medium" at 18 on 1080x1920 frames, with
# the same PSNR against the source (~43 dB); the files are ~2x larger (benchmarks/RESULTS.md).
FAST_ENCODING = VideoEncoding(crf=16, preset="superfast")
# The slow, small, high-quality setting (``--archival``).
ARCHIVAL_ENCODING = VideoEncoding(crf=DEFAULT_CRF, preset="slow")


class VideoWriter:
    """Encode RGB uint8 frames one at a time to H.264 (yuv420p, libx264 with ``encoding``) and publish
    the file atomically.

    Use as a context manager; the file appears at ``path`` only when the block exits
    without an exception. yuv420p needs even sizes, so an odd width or height is padded
    by one pixel, repeating the last column/row (the stored size is then even).
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
        self.frames_written = 0
        self._atomic = None
        self._container = None
        self._stream = None

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_output(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(tmp, "w")
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.width = self.width + self.width % 2
            stream.height = self.height + self.height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(self.encoding.crf), "preset": self.encoding.preset}
            stream.codec_context.thread_count = self.encoding.threads
            self._stream = stream
        except BaseException as err:
            self._abort(err)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._stream is None:
            raise RuntimeError("VideoWriter.write called outside its `with` block")
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a ({self.height}, {self.width}, 3) uint8 frame, got {frame.shape} {frame.dtype}"
            )
        pad_h, pad_w = self.height % 2, self.width % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        # OpenCV's RGB -> I420 (BT.601, limited range, as the decoder assumes) is several times faster
        # than the conversion the encoder would otherwise run through swscale.
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
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


# --------------------------------------------------------------------------- muxing


def mux_audio(
    video_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    out_path: str | os.PathLike,
    audio_offset: float = 0.0,
    shortest: bool = True,
) -> None:
    """Copy the video stream of ``video_path`` and add the audio of ``audio_path`` as AAC.

    ``audio_offset`` (seconds) is where in the audio file the first video frame starts:
    that much audio is skipped. With ``shortest`` the output ends with the shorter stream
    (never after the video); without it, the longer stream sets the length.
    The result is written under a temporary name and renamed to ``out_path``.
    """
    video_path = require_file(video_path, "video")
    audio_path = require_file(audio_path, "audio")
    if audio_offset < 0:
        raise ValueError(f"audio_offset must be >= 0 seconds, got {audio_offset}")
    with atomic_output(out_path) as tmp:
        args = ["-y", "-loglevel", "error", "-i", _ffmpeg_path(video_path)]
        if audio_offset > 0:
            args += ["-ss", f"{audio_offset:.6f}"]
        args += [
            "-i", _ffmpeg_path(audio_path),
            "-map", "0:v:0",
            "-map", "1:a:0",
            "-c:v", "copy",
            "-c:a", "aac",
            "-b:a", "192k",
        ]
        if shortest:
            # -shortest alone lets the audio overrun by up to the muxer's interleaving
            # buffer (~0.2 s); capping at the video's duration makes the cut exact.
            args += ["-shortest", "-t", f"{probe_video(video_path).duration:.6f}"]
        args.append(_ffmpeg_path(tmp))
        _run_ffmpeg(args, f"{os.fspath(video_path)} + {os.fspath(audio_path)}", "mux")


# --------------------------------------------------------------------------- output checks


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_output_path(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> str:
    """Refuse, before any work, an output that would replace an input, is not a video file name,
    or cannot be written: the folder must exist or be creatable, and accept a new file."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in OUTPUT_EXTENSIONS:
        raise OutputError(f"output {path!r} must end in {', '.join(OUTPUT_EXTENSIONS)} (the extension picks the container)")
    for source in inputs:
        if _same_file(path, os.fspath(source)):
            raise OutputError(f"output {path!r} is the input file {os.fspath(source)!r}; choose another output path")
    if os.path.isdir(path):
        raise OutputError(f"output {path!r} is an existing folder; name a file inside it")
    if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
        raise OutputError(f"output {path!r} exists and is not a regular file")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"output {path!r}")
    return path


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Refuse a folder that is a file, or that (or its nearest existing parent) does not accept new files.

    Nothing is created: a missing folder is made later, when something is written into it.
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == folder else f"is under {existing!r}, which is a file"
        raise OutputError(f"{what}: folder {folder!r} {where}")
    try:  # the real test: read-only mounts, immutable folders and /proc refuse it whatever the mode bits say
        fd, probe = tempfile.mkstemp(prefix=owned_prefix(TEMP_PREFIX) + "probe-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise OutputError(f"{what}: folder {existing!r} does not accept new files ({err.strerror})") from err


# --------------------------------------------------------------------------- transcoding


def transcode_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float = 25,
    sample_rate: int = SAMPLE_RATE,
    frames: tuple[int, int] | None = None,
    crf: int = DEFAULT_CRF,
) -> None:
    """Re-encode the first video and first audio stream of ``src`` at ``fps`` and ``sample_rate`` mono
    (H.264 + AAC mp4); every other stream (timecode, data, subtitles) and all metadata are left out.

    ``frames`` = (start, stop) keeps output frames start..stop-1 exactly (and the audio of the same
    span), counted after the frame-rate conversion. Written under a temporary name, then renamed.
    """
    src = require_file(src, "video")
    video_filters, audio_filters = [f"fps={fps}"], [f"aresample={sample_rate}"]
    if frames is not None:
        start, stop = frames
        if not 0 <= start < stop:
            raise ValueError(f"frames must be 0 <= start < stop, got {frames}")
        video_filters += [f"trim=start_frame={start}:end_frame={stop}", "setpts=PTS-STARTPTS"]
        to_sample = sample_rate / fps
        audio_filters += [
            f"atrim=start_sample={round(start * to_sample)}:end_sample={round(stop * to_sample)}",
            "asetpts=PTS-STARTPTS",
        ]
    with atomic_output(dst) as tmp:
        args = [
            "-y", "-loglevel", "error",
            "-i", _ffmpeg_path(src),
            "-map", "0:v:0", "-map", "0:a:0",
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-vf", ",".join(video_filters),
            "-af", ",".join(audio_filters),
            "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-ac", "1", "-ar", str(sample_rate),
            "-write_tmcd", "0",
            "-f", "mp4", _ffmpeg_path(tmp),
        ]
        _run_ffmpeg(args, src, "transcode")

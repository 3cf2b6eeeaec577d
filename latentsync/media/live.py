"""Writing a live stream as its frames come: H.264 + AAC muxed frame by frame into fragmented MP4 or
MPEG-TS, to a file, to an open file descriptor (a pipe), or to an ``rtmp://``/``srt://`` server through
an ffmpeg relay.

A file is written under a temporary name beside its target and renamed into place when the stream ends
(:func:`~latentsync.utils.files.atomic_output`): a failed or interrupted stream leaves no partial file
(and a killed run's is removed by the next one).
A pipe gets every packet as soon as it is muxed (a player reading it shows the stream live). A server
gets MPEG-TS from this process through ``ffmpeg -c copy`` (FLV for RTMP), run as an argument list; if the
relay exits (the server refused, or went away), the next frame raises an OutputError with its reason.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import threading
from fractions import Fraction
from urllib.parse import urlsplit

import av
import numpy as np

from latentsync.errors import ConfigError, OutputError
from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.writer import VideoEncoding, add_h264_stream, rgb_video_frame
from latentsync.utils.files import TEMP_PREFIX, atomic_output, remove_stale

logger = logging.getLogger(__name__)

# Container of each stream format, and the muxer options that make it playable while it is written.
STREAM_FORMATS = {
    "fmp4": ("mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
    "mpegts": ("mpegts", {}),
}
FILE_FORMATS = {".mp4": "fmp4", ".m4v": "fmp4", ".mov": "fmp4", ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts"}
URL_FORMATS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts"}  # what the relay sends to each kind of server
# Fast enough for 25 fps at 1080p on a few cores, no frame held back, a keyframe (a new fragment) every second.
LIVE_ENCODING = VideoEncoding(crf=20, preset="veryfast", tune="zerolatency", gop=25)
AUDIO_RATE = 48000  # Hz of the AAC track: what streaming services and players expect
_RELAY_STDERR_LINES = 20


def is_url(target: str | os.PathLike | int) -> bool:
    return isinstance(target, str) and "://" in target


def shown_url(url: str) -> str:
    """``url`` without its path and query, which often hold a stream key: for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…" if parts.path or parts.query else url


def stream_format(target: str | os.PathLike | int, requested: str | None = None) -> str:
    """The stream format of ``target``: a file's by its extension, a server's by its scheme (the relay's
    input is MPEG-TS), a descriptor's ``requested`` one (default MPEG-TS); a ConfigError if they disagree."""
    if isinstance(target, int):
        return requested or "mpegts"
    if is_url(target):
        scheme = target.split("://", 1)[0].lower()
        if scheme not in URL_FORMATS:
            raise ConfigError(f"cannot stream to {scheme}:// URLs; use {', '.join(s + '://' for s in URL_FORMATS)}, "
                              "a file or - (standard output)")
        if requested not in (None, "mpegts"):
            raise ConfigError(f"--format {requested} does not apply to {scheme}:// (the server gets "
                              f"{URL_FORMATS[scheme].upper()})")
        return "mpegts"
    extension = os.path.splitext(os.fspath(target))[1].lower()
    if extension not in FILE_FORMATS:  # check_output_path(path, extensions=tuple(FILE_FORMATS)) says it first
        raise OutputError(f"output {os.fspath(target)!r} must end in {', '.join(FILE_FORMATS)}")
    if requested not in (None, FILE_FORMATS[extension]):
        raise ConfigError(f"output {os.fspath(target)!r} is {FILE_FORMATS[extension]} by its extension, but --format "
                          f"asks for {requested}")
    return FILE_FORMATS[extension]


class LiveWriter:
    """Encode (RGB frame, 16 kHz audio) pairs to a live stream at ``target``: a path, a file descriptor, or an
    ``rtmp://``/``srt://`` URL. Use as a context manager: a file is published when the block exits cleanly."""

    def __init__(
        self,
        target: str | os.PathLike | int,
        fmt: str,
        width: int,
        height: int,
        *,
        fps: int = 25,
        sample_rate: int = 16000,
        encoding: VideoEncoding = LIVE_ENCODING,
        name: str | None = None,
    ) -> None:
        if fmt not in STREAM_FORMATS:
            raise ConfigError(f"stream format must be one of {', '.join(STREAM_FORMATS)}, got {fmt!r}")
        self.target, self.fmt = target, fmt
        self.width, self.height, self.fps, self.sample_rate = width, height, fps, sample_rate
        self.encoding = encoding
        self.frames_written = 0
        self._name = name
        self._stack = contextlib.ExitStack()
        self._relay: _Relay | None = None
        self._held: list | None = []  # video packets waiting for the first audio packet (None: it has come)
        self._container = self._video = self._audio = self._standard = None

    @property
    def shown(self) -> str:
        """The target as messages name it (``name`` if given)."""
        if self._name is not None:
            return self._name
        if isinstance(self.target, int):
            return f"file descriptor {self.target}"
        return shown_url(self.target) if is_url(self.target) else os.fspath(self.target)

    def __enter__(self) -> "LiveWriter":
        try:
            if isinstance(self.target, int):
                where = f"pipe:{self.target}"
            elif is_url(self.target):
                self._relay = self._stack.enter_context(_Relay(self.target))
                where = f"pipe:{self._relay.fd}"
            else:
                remove_stale(os.path.dirname(os.path.abspath(self.target)), TEMP_PREFIX)  # a killed run's partial file
                where = self._stack.enter_context(atomic_output(self.target))
            container_format, options = STREAM_FORMATS[self.fmt]
            self._container = av.open(where, "w", format=container_format,
                                      options={**options, "flush_packets": "1"})
            self._video, self._standard = add_h264_stream(self._container, Fraction(self.fps), self.width,
                                                          self.height, self.encoding)
            self._audio = self._container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        except BaseException as err:
            self._abort(err)
            raise
        return self

    def write(self, image: np.ndarray, audio: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame and its audio: (n,) float32 at ``sample_rate``."""
        if self._container is None:
            raise RuntimeError("LiveWriter.write called outside its `with` block")
        video_frame = rgb_video_frame(image, self.width, self.height, self._standard)
        video_frame.pts, video_frame.time_base = self.frames_written, Fraction(1, self.fps)
        samples = np.ascontiguousarray(np.asarray(audio, np.float32)[None, :])
        audio_frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        audio_frame.sample_rate = self.sample_rate
        audio_frame.pts = round(self.frames_written * self.sample_rate / self.fps)
        audio_frame.time_base = Fraction(1, self.sample_rate)
        try:
            self._mux(self._video.encode(video_frame), self._audio.encode(audio_frame))
        except (OSError, av.FFmpegError) as err:
            raise self._write_failed(err) from err
        self.frames_written += 1
        if self._relay is not None:
            self._relay.check()

    def _mux(self, video_packets: list, audio_packets: list) -> None:
        """Mux, the first audio packet before any video: it starts before 0 (the AAC encoder's priming), and the
        muxer shifts the streams by the first negative time it meets, so meeting it first keeps them in step."""
        if self._held is not None:
            self._held.extend(video_packets)
            video_packets = []
            if audio_packets:
                self._container.mux(audio_packets[0])
                video_packets, audio_packets, self._held = self._held, audio_packets[1:], None
        for packet in video_packets + audio_packets:
            self._container.mux(packet)

    def _write_failed(self, err: BaseException) -> OutputError:
        if self._relay is not None:
            return self._relay.failure(wait=5.0) or OutputError(f"cannot stream to {self.shown}: {err}")
        if isinstance(self.target, int) and isinstance(err, BrokenPipeError):
            return OutputError(f"the reader of {self.shown} closed it; the stream stopped")
        return OutputError(f"cannot write the stream to {self.shown}: {err}")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
            return
        try:
            self._mux(self._video.encode(), self._audio.encode())
            if self._held:  # no audio packet at all
                self._container.mux(self._held)
            self._container.close()
            self._container = None
            if self._relay is not None:
                self._relay.finish()
        except (OSError, av.FFmpegError) as err:
            failure = self._write_failed(err)
            self._abort(failure)
            raise failure from err
        except BaseException as err:
            self._abort(err)
            raise
        self._stack.close()

    def _abort(self, err: BaseException) -> None:
        if self._container is not None:
            with contextlib.suppress(OSError, av.FFmpegError):
                self._container.close()
            self._container = None
        if self._relay is not None:
            self._relay.kill()
        self._stack.__exit__(type(err), err, err.__traceback__)


class _Relay:
    """``ffmpeg -f mpegts -i pipe:0 -c copy`` to a server URL: MPEG-TS in on ``fd``, the server's format out."""

    def __init__(self, url: str) -> None:
        self.url = url
        scheme = url.split("://", 1)[0].lower()
        self._command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                         # Connect after 0.5 s of stream, not 5 s (a refusing server is found that soon):
                         "-analyzeduration", "500000", "-f", "mpegts", "-i", "pipe:0",
                         "-c", "copy", "-f", URL_FORMATS[scheme], url]
        self._stderr: collections.deque[str] = collections.deque(maxlen=_RELAY_STDERR_LINES)
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "_Relay":
        logger.debug("relaying the stream to %s with ffmpeg", shown_url(self.url))
        self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        self._drain = threading.Thread(target=self._read_stderr, name="relay-stderr", daemon=True)
        self._drain.start()
        return self

    @property
    def fd(self) -> int:
        return self._proc.stdin.fileno()

    def _read_stderr(self) -> None:
        for line in self._proc.stderr:
            text = line.decode("utf-8", "replace").strip().removeprefix(self.url + ":").strip()
            text = text.replace(self.url, shown_url(self.url))
            if text:
                self._stderr.append(text)

    def failure(self, wait: float = 0.0) -> OutputError | None:
        """Why the relay stopped (None while it runs, after ``wait`` seconds): the server's refusal in ffmpeg's words."""
        try:
            self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        self._drain.join(timeout=5)
        said = self._stderr[-1] if self._stderr else f"ffmpeg exited with status {self._proc.returncode}"
        return OutputError(f"cannot stream to {shown_url(self.url)}: {said}")

    def check(self) -> None:
        failure = self.failure()
        if failure is not None:
            raise failure

    def finish(self) -> None:
        """End of stream: the relay sends what it holds and exits (an OutputError if it fails)."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise OutputError(f"the relay to {shown_url(self.url)} did not finish within 30 s") from None
        if self._proc.returncode != 0:
            self.check()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self.kill()
        self._drain.join(timeout=5)
        with contextlib.suppress(OSError):
            self._proc.stderr.close()

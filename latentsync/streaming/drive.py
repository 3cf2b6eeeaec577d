"""Driving a session from an audio source and measuring it: what the command line and the web page share.

:class:`Feeder` pushes a source's chunks into a session from its own thread: a decoded file at the pace
it would be heard (each chunk when its last sample would have been captured, on the session's clock) or
all at once, or raw PCM as it arrives on a pipe (:func:`pcm_chunks`); then it finishes the stream. If
the source fails, or :meth:`Feeder.stop` is called, it closes the session, so that a reader blocked in
``session.read()`` wakes (and gets None); :meth:`Feeder.raise_error` then re-raises the source's error.

:class:`Meter` counts the frames read and says how the stream goes: frames per second, lip-synced, late
and dropped frames, and the latency from the first audio pushed to the first talking frame read.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from latentsync.errors import StreamError
from latentsync.pipelines.frame_plan import VIDEO_FPS
from latentsync.streaming.clock import Clock
from latentsync.streaming.render import StreamFrame

logger = logging.getLogger(__name__)

PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}  # raw PCM on a pipe: little-endian samples
PIPE_READ_BYTES = 1 << 16  # at most this much is read from a pipe at once (less when less has arrived)


def file_chunks(samples: np.ndarray, sample_rate: int, seconds: float) -> Iterator[np.ndarray]:
    """``samples`` in pieces of ``seconds`` (the last one shorter), as a live source would deliver them."""
    size = max(1, round(seconds * sample_rate))
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def pcm_chunks(stream: BinaryIO, fmt: str, channels: int) -> Iterator[np.ndarray]:
    """Interleaved raw PCM read from ``stream`` as (n, channels) arrays, each as soon as its bytes arrive.

    A StreamError if the stream ends inside a sample frame (a wrong format or channel count, or a cut file).
    """
    if fmt not in PCM_FORMATS:
        raise StreamError(f"raw PCM format must be one of {', '.join(PCM_FORMATS)}, got {fmt!r}")
    dtype = PCM_FORMATS[fmt]
    frame_bytes = dtype.itemsize * channels
    read = stream.read1 if hasattr(stream, "read1") else stream.read  # read1: what has arrived, without waiting
    pending = b""
    while data := read(PIPE_READ_BYTES):
        pending += data
        whole = len(pending) - len(pending) % frame_bytes
        if whole:
            yield np.frombuffer(pending[:whole], dtype).reshape(-1, channels)
            pending = pending[whole:]
    if pending:
        raise StreamError(f"the raw PCM input ended inside a sample: {len(pending)} bytes left over, not a whole "
                          f"{channels}-channel {fmt} sample ({frame_bytes} bytes); check --input_format and "
                          "--input_channels")


class Feeder:
    """Push ``chunks`` (arrays at ``sample_rate``) into ``session`` from a thread, then finish it.

    ``pace``: a clock to push each chunk when its last sample would have been heard (None: as fast as
    they come, e.g. a pipe that has its own pace). ``finish``: end the stream with the source (False:
    the session goes on, e.g. a file played into a live page). ``first_push`` is the monotonic time of
    the first non-empty push.
    """

    def __init__(self, session, chunks: Iterable[np.ndarray], sample_rate: int, *, pace: Clock | None = None,
                 finish: bool = True, name: str = "stream-feed") -> None:
        self.session, self.chunks, self.sample_rate, self.pace = session, chunks, sample_rate, pace
        self.finish = finish
        self.samples_pushed = 0
        self.first_push: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Feeder":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            start = self.pace.now() if self.pace is not None else 0.0
            for chunk in self.chunks:
                if self._stop.is_set():
                    return
                if self.pace is not None:
                    self.pace.sleep_until(start + (self.samples_pushed + len(chunk)) / self.sample_rate, self._stop)
                    if self._stop.is_set():
                        return
                if len(chunk) and self.first_push is None:
                    self.first_push = time.monotonic()
                self.session.push_audio(chunk, self.sample_rate)
                self.samples_pushed += len(chunk)
            if self.finish:
                self.session.finish()
        except BaseException as err:  # noqa: BLE001 - handed to the reader by raise_error()
            if not self._stop.is_set():
                self.error = err
                logger.debug("audio source failed: %s", err)
                self.session.close()  # the reader wakes with None and asks raise_error()

    def stop(self) -> None:
        """Stop pushing (the session is the caller's to close)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def raise_error(self) -> None:
        """Re-raise what stopped the source, if anything did."""
        if self.error is not None:
            raise self.error


class Meter:
    """How a stream goes, from the frames read: a progress line at most every ``every`` seconds, and a summary."""

    def __init__(self, every: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.frames = self.synced = 0
        self.started = clock()
        self.first_synced_at: float | None = None
        self._mark, self._mark_frames = self.started, 0

    def count(self, frame: StreamFrame) -> None:
        self.frames += 1
        if frame.synced:
            self.synced += 1
            if self.first_synced_at is None:
                self.first_synced_at = self.clock()

    def due(self) -> bool:
        return self.clock() - self._mark >= self.every

    def latency(self, first_push: float | None) -> float | None:
        """Seconds from the first audio pushed to the first talking frame read (None until both happened)."""
        if first_push is None or self.first_synced_at is None:
            return None
        return self.first_synced_at - first_push

    def line(self, stats, first_push: float | None) -> str:
        """Progress since the last line: stream time, frames per second, lip-synced/late/dropped frames, latency."""
        now = self.clock()
        fps = (self.frames - self._mark_frames) / max(now - self._mark, 1e-9)
        self._mark, self._mark_frames = now, self.frames
        latency = self.latency(first_push)
        return (f"{self.frames / VIDEO_FPS:.1f} s streamed, {fps:.1f} fps, {self.synced} lip-synced, "
                f"{stats.late_frames} late, {stats.dropped_frames} dropped, first-frame latency "
                + (f"{latency:.2f} s" if latency is not None else "-"))

    def summary(self, stats, first_push: float | None) -> str:
        """The whole stream in one line."""
        seconds = self.clock() - self.started
        latency = self.latency(first_push)
        per_clip = stats.seconds_per_clip
        return (f"{self.frames} frames ({self.frames / VIDEO_FPS:.2f} s), {self.synced} lip-synced, "
                f"{stats.late_frames} late, {stats.dropped_frames} dropped; {self.frames / max(seconds, 1e-9):.1f} fps "
                f"over {seconds:.1f} s; first-frame latency "
                + (f"{latency:.2f} s" if latency is not None else "-")
                + (f"; {stats.clips_generated} clips generated, {np.mean(per_clip):.2f} s each" if per_clip else ""))

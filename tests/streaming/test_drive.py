"""Driving a session (latentsync/streaming/drive.py) without models: raw PCM from a pipe cut anywhere, the
feeder's pushes, pacing, end and failure, and the meter's figures on a hand-moved clock."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from latentsync.errors import StreamError
from latentsync.streaming.clock import Clock
from latentsync.streaming.drive import Feeder, Meter, file_chunks, pcm_chunks
from latentsync.streaming.session import StreamStats


class Pieces:
    """A pipe that delivers ``data`` in the given piece sizes (read1: what has arrived, never more)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.reads = data, list(sizes), 0

    def read1(self, limit: int) -> bytes:
        self.reads += 1
        size = min(self.sizes.pop(0) if self.sizes else len(self.data), limit, len(self.data))
        piece, self.data = self.data[:size], self.data[size:]
        return piece


class Recording:
    """What a feeder does to a session: the chunks pushed (with their rate), finish and close."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.pushed: list[tuple[np.ndarray, int]] = []
        self.finished = self.closed = False
        self.fail_after = fail_after

    def push_audio(self, samples, rate) -> None:
        if self.fail_after is not None and len(self.pushed) == self.fail_after:
            raise StreamError("audio chunk has NaN or infinite samples")
        self.pushed.append((np.array(samples), rate))

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        self.closed = True


class SteppingClock(Clock):
    """A clock that jumps to every time it is asked to wait for (and records the asks)."""

    def __init__(self) -> None:
        self.time, self.waits = 10.0, []

    def now(self) -> float:
        return self.time

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        self.waits.append(round(when - 10.0, 6))
        self.time = max(self.time, when)


@pytest.mark.parametrize("fmt, dtype, channels", [("s16le", "<i2", 2), ("f32le", "<f4", 1), ("s16le", "<i2", 6)])
def test_pcm_cut_anywhere_comes_out_whole(fmt, dtype, channels):
    rng = np.random.default_rng(0)
    samples = (rng.uniform(-0.5, 0.5, (1001, channels)) * (32767 if dtype == "<i2" else 1)).astype(dtype)
    pipe = Pieces(samples.tobytes(), [1, 3, 7, 64, 2, 5000, 13])
    chunks = list(pcm_chunks(pipe, fmt, channels))
    assert all(chunk.shape[1] == channels and len(chunk) for chunk in chunks)
    assert np.array_equal(np.concatenate(chunks), samples)
    assert len(chunks) > 3  # handed on as they arrive, not all at the end


def test_pcm_that_ends_inside_a_sample_says_so():
    pipe = Pieces(np.zeros(10, "<i2").tobytes() + b"\x01", [4, 100])
    got = []
    with pytest.raises(StreamError, match=r"ended inside a sample: 1 bytes left over, not a whole 1-channel s16le"):
        for chunk in pcm_chunks(pipe, "s16le", 1):
            got.append(chunk)
    assert sum(len(c) for c in got) == 10  # every whole sample was handed on first
    with pytest.raises(StreamError, match="must be one of s16le, f32le"):
        next(pcm_chunks(Pieces(b"", []), "u8", 1))


def test_a_file_is_pushed_whole_then_finished():
    samples = np.arange(1000, dtype=np.float32)
    session = Recording()
    feeder = Feeder(session, file_chunks(samples, 16000, 0.02), 16000).start()
    feeder.join(timeout=30)
    feeder.raise_error()
    assert [len(c) for c, _ in session.pushed] == [320, 320, 320, 40] and {r for _, r in session.pushed} == {16000}
    assert np.array_equal(np.concatenate([c for c, _ in session.pushed]), samples)
    assert session.finished and not session.closed and feeder.first_push is not None


def test_paced_pushes_wait_for_the_moment_their_last_sample_is_heard():
    clock = SteppingClock()
    session = Recording()
    feeder = Feeder(session, file_chunks(np.zeros(800, np.float32), 16000, 0.02), 16000, pace=clock,
                    finish=False).start()
    feeder.join(timeout=30)
    assert clock.waits == [0.02, 0.04, 0.05]
    assert len(session.pushed) == 3 and not session.finished  # a file played into a live stream: it goes on


def test_a_failing_source_closes_the_session_and_its_error_reaches_the_reader():
    session = Recording(fail_after=2)
    feeder = Feeder(session, file_chunks(np.zeros(5000, np.float32), 16000, 0.01), 16000).start()
    feeder.join(timeout=30)
    assert session.closed and not session.finished and len(session.pushed) == 2
    with pytest.raises(StreamError, match="NaN"):
        feeder.raise_error()


def test_a_stopped_feeder_pushes_nothing_more_and_reports_nothing():
    gate = threading.Event()

    def chunks():
        yield np.zeros(10, np.float32)
        gate.wait(30)
        yield np.zeros(10, np.float32)

    session = Recording()
    feeder = Feeder(session, chunks(), 16000).start()
    feeder.stop()
    gate.set()
    feeder.join(timeout=30)
    feeder.raise_error()
    assert len(session.pushed) <= 1 and not session.finished and not session.closed


class Frame:
    def __init__(self, synced: bool) -> None:
        self.synced = synced


def test_the_meter_counts_frames_rates_and_the_first_frame_latency():
    now = [100.0]
    meter = Meter(every=2.0, clock=lambda: now[0])
    stats = StreamStats(late_frames=1, dropped_frames=0, clips_generated=3, seconds_per_clip=[0.1, 0.2, 0.3])
    for k in range(50):  # 2 s of frames, talking from the 30th, read 40 ms apart
        now[0] = 100.0 + 0.04 * (k + 1)
        meter.count(Frame(synced=k >= 29))
    assert meter.due()
    assert meter.latency(first_push=100.5) == pytest.approx(100.0 + 0.04 * 30 - 100.5)
    line = meter.line(stats, first_push=100.5)
    assert line == "2.0 s streamed, 25.0 fps, 21 lip-synced, 1 late, 0 dropped, first-frame latency 0.70 s"
    assert not meter.due()
    assert meter.summary(stats, first_push=None) == (
        "50 frames (2.00 s), 21 lip-synced, 1 late, 0 dropped; 25.0 fps over 2.0 s; first-frame latency -; 3 clips "
        "generated, 0.20 s each")

"""Clocks of a streaming session: the wall clock of a live stream, or a virtual one that tests move by hand.

A session on a clock is *real-time*: frame k is due ``k / 25`` s after the session started, frames
flow at 25 fps whether or not speech arrives, and speech pushed after a pause is placed just far
enough ahead to be ready in time. On a :class:`VirtualClock` the same decisions are made at the same
virtual times, in the thread that moves the clock, so a test sees the same frames on any machine.
A session without a clock runs as fast as it can, its time being the audio pushed.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Callable


class Clock:
    """Seconds on a monotonic time line (only differences matter)."""

    def now(self) -> float:
        raise NotImplementedError

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        """Wait until ``now() >= when`` or until ``wake`` is set (whichever is first)."""
        raise NotImplementedError


class WallClock(Clock):
    """The machine's monotonic clock: a live stream."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        wake.wait(max(0.0, when - self.now()))


class VirtualClock(Clock):
    """A clock that moves only when :meth:`advance` is called; sessions on it plan in that call."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._listeners: list[weakref.WeakMethod | Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def sleep_until(self, when: float, wake: threading.Event) -> None:
        wake.wait()  # virtual time passes only in advance(), which calls the listeners itself

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``; every session on it plans up to the new time before this returns."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward, got {seconds} s")
        with self._lock:
            self._now += seconds
            listeners = [ref() for ref in self._listeners]
        for listener in listeners:
            if listener is not None:
                listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call the bound method ``listener`` after each advance (held weakly); returns the unsubscribe function."""
        ref = weakref.WeakMethod(listener)
        with self._lock:
            self._listeners.append(ref)

        def unsubscribe() -> None:
            with self._lock:
                if ref in self._listeners:
                    self._listeners.remove(ref)

        return unsubscribe

"""What every command-line entry point shares: one ``error:`` line for usage mistakes, numeric flags
checked against their range while parsing, SIGINT/SIGTERM as an exception that unwinds cleanup,
and folders a run creates for itself.

An entry point's ``main`` hands its body to :func:`run_main`, the one place that turns a
:class:`~latentsync.errors.LatentSyncError` or an interruption into one ``error:`` line and an exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from typing import Callable, Iterator

from latentsync.errors import ConfigError, LatentSyncError, one_line

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes become a ConfigError, so they end in the same single ``error:`` line as every other failure."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def number(
    kind: type = int, low: float | None = None, high: float | None = None, *, above: bool = False,
    even: bool = False, odd: bool = False,
) -> Callable[[str], int | float]:
    """An argparse ``type`` that parses ``kind`` and refuses values outside [low, high] (``above``: low itself
    excluded), odd values when ``even``, even ones when ``odd``, and nan/inf, naming the allowed range."""
    words = ["an even integer" if even else "an odd integer" if odd else "an integer" if kind is int else "a number"]
    if low is not None and high is not None and not above:
        words.append(f"between {low:g} and {high:g}")
    elif low is not None:
        words.append(f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else ""))
    elif high is not None:
        words.append(f"<= {high:g}")
    wanted = " ".join(words)

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if (
            not math.isfinite(value)
            or (low is not None and (value <= low if above else value < low))
            or (high is not None and value > high)
            or (even and value % 2)
            or (odd and not value % 2)
        ):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (every ``finally`` removes what it made) and exit 128 + signal.

    A BaseException, so ``except Exception`` handlers that record failures never swallow it; picklable,
    so a pool worker's interruption reaches the parent as itself.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into :class:`Interrupted` for the block, so cleanup runs for both.

    Installed whatever the inherited disposition (a job started in the background by a script
    ignores SIGINT, but its ffmpeg children do not: the run must stop with them). Later signals
    are ignored while the first one unwinds, so a second Ctrl-C cannot cut the cleanup short.
    """
    received: list[int] = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM pending for the block (delivered when it ends).

    Child processes started inside inherit the blocked mask, so a signal that arrives while they
    import cannot end them with a traceback; they unblock it once their handlers are in place.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def made_folder(folder: str | os.PathLike | None) -> Iterator[None]:
    """Create ``folder`` (and missing parents) if it is missing; afterwards remove what this created, if empty."""
    created = []
    path = os.path.abspath(folder) if folder is not None else None
    while path is not None and not os.path.exists(path):
        created.append(path)  # deepest first
        path = os.path.dirname(path)
    if created:
        os.makedirs(folder)
    try:
        yield
    finally:
        for path in created:
            try:
                os.rmdir(path)  # only if empty: never delete what is inside
            except OSError:
                break


def run_main(body: Callable[[], int], after_interrupt: str | Callable[[], str],
             errors: tuple[type[BaseException], ...] = (LatentSyncError, OSError),
             line: Callable[[BaseException], str] = lambda err: f"error: {one_line(err)}") -> int:
    """Run an entry point's ``body`` with :func:`signals_raise`: its exit status, or 1 after ``line(err)`` for
    ``errors``, or 128 + signal after ``error: interrupted by SIGINT; <after_interrupt>`` (what became of the
    run's outputs; a callable is asked once the signal has unwound, when the body knows)."""
    with signals_raise():
        try:
            return body()
        except errors as err:
            print(line(err), file=sys.stderr)
            return 1
        except Interrupted as stop:
            note = after_interrupt() if callable(after_interrupt) else after_interrupt
            print(f"error: interrupted by {stop}; {note}", file=sys.stderr)
            return 128 + stop.signum

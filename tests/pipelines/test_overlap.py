"""Prefetch, Drain and Backlog: order kept, queues bounded, worker errors raised unchanged, threads always joined."""

from __future__ import annotations

import threading
import time

import pytest

from latentsync.pipelines.overlap import Backlog, Drain, Prefetch


class Boom(RuntimeError):
    pass


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_prefetch_keeps_order_and_stays_at_most_depth_ahead(depth):
    produced = []

    def items():
        for i in range(8):
            produced.append(i)
            yield i

    reading = Prefetch(items(), depth, name="t-prefetch")
    seen = []
    for item in reading:
        time.sleep(0.02)  # the producer gets time to run ahead, as far as the queue lets it
        # queued (depth) + one held by the blocked producer, beyond what was consumed
        assert len(produced) - (len(seen) + 1) <= depth + 1
        seen.append(item)
    reading.close()
    assert seen == list(range(8))
    assert not _threads("t-prefetch")


def test_prefetch_raises_the_workers_error_after_the_items_before_it():
    error = Boom("frame 5 could not be decoded")

    def items():
        yield from range(5)
        raise error

    reading = Prefetch(items(), 1, name="t-prefetch-error")
    seen = []
    with pytest.raises(Boom) as caught:
        for item in reading:
            seen.append(item)
    reading.close()
    assert caught.value is error
    assert seen == [0, 1, 2, 3, 4]
    assert not _threads("t-prefetch-error")


def test_prefetch_closed_early_stops_its_thread_and_frees_the_generator():
    closed = []

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append(True)

    generator = items()
    reading = Prefetch(generator, 1, name="t-prefetch-early")
    assert next(reading) == 0
    reading.close()
    assert not _threads("t-prefetch-early")
    generator.close()  # would raise "generator already executing" if the thread still ran it
    assert closed == [True]


@pytest.mark.parametrize("depth", [0, 1])
def test_drain_consumes_everything_in_order(depth):
    consumed = []
    writing = Drain(lambda item: (time.sleep(0.005), consumed.append(item)), depth, name="t-drain")
    for i in range(10):
        writing.submit(i)
    writing.finish()
    writing.close()
    assert consumed == list(range(10))
    assert not _threads("t-drain")


def test_drain_error_surfaces_in_the_main_thread_and_stops_the_worker():
    error = Boom("encoder pipe closed")
    consumed = []

    def consume(item):
        if item == 3:
            raise error
        consumed.append(item)

    writing = Drain(consume, 1, name="t-drain-error")
    with pytest.raises(Boom) as caught:
        for i in range(100):
            writing.submit(i)
        writing.finish()
    writing.close()
    assert caught.value is error
    assert consumed == [0, 1, 2]
    assert not _threads("t-drain-error")


def test_drain_closed_while_full_waits_for_the_item_in_hand_and_drops_the_queued_one():
    started, release, consumed = threading.Event(), threading.Event(), []

    def consume(item):
        started.set()
        assert release.wait(timeout=60)
        consumed.append(item)

    writing = Drain(consume, 1, name="t-drain-close")
    writing.submit(0)
    assert started.wait(timeout=60)  # item 0 is being consumed (blocked) ...
    writing.submit(1)  # ... and item 1 fills the queue
    closer = threading.Thread(target=writing.close, name="t-drain-closer")
    closer.start()
    assert writing.stop.wait(timeout=60)  # close() asked the worker to stop ...
    assert closer.is_alive() and consumed == []  # ... and waits for the item in hand
    release.set()
    closer.join(timeout=60)  # a hang fails here instead of blocking the test run
    assert not closer.is_alive()
    assert consumed == [0]  # the queued item was dropped, not consumed after close()
    assert not _threads("t-drain-close")


@pytest.mark.parametrize("background", [False, True])
def test_backlog_is_read_in_order_while_it_grows(background):
    release = threading.Event()

    def items():
        yield from range(3)
        release.wait(timeout=5)  # the reader gets the first items before the rest exist
        yield from range(3, 6)

    if not background:
        release.set()
    backlog = Backlog(items(), background=background, name="t-backlog")
    seen = []
    for item in backlog:
        seen.append(item)
        if item == 2:
            assert backlog.finished is not background and backlog.count == (6 if not background else 3)
            release.set()
    assert seen == list(range(6)) and backlog.wait() == list(range(6)) and backlog.finished
    backlog.close()
    assert not _threads("t-backlog")


def test_backlog_raises_the_error_after_the_items_before_it_and_from_wait():
    error = Boom("detector crashed")

    def items():
        yield from range(4)
        raise error

    backlog = Backlog(items(), name="t-backlog-error")
    seen = []
    with pytest.raises(Boom) as caught:
        for item in backlog:
            seen.append(item)
    assert caught.value is error and seen == [0, 1, 2, 3]
    with pytest.raises(Boom):
        backlog.wait()
    backlog.close()
    assert not _threads("t-backlog-error")


def test_backlog_closed_early_stops_its_thread_and_frees_the_generator():
    closed = []

    def items():
        try:
            for i in range(10**9):
                time.sleep(0.001)
                yield i
        finally:
            closed.append(True)

    generator = items()
    backlog = Backlog(generator, name="t-backlog-early")
    assert next(iter(backlog)) == 0
    backlog.close()
    assert not _threads("t-backlog-early") and backlog.finished
    generator.close()
    assert closed == [True]

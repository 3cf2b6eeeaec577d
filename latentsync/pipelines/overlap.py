"""Run the CPU stages around the denoiser in threads, so the accelerator never waits for them.

While the main thread denoises clip k, a reader thread decodes and aligns clip k+1
(:class:`Prefetch`) and a writer thread restores and encodes clip k-1 (:class:`Drain`); the face
detection pass runs ahead of them all in a thread of its own (:class:`Backlog`). Decoding,
OpenCV warps, mediapipe and the encoder's pipe release the GIL, so this overlaps on a CPU too.
Queues hold at most ``depth`` items, so memory stays flat however long the video is (a backlog
keeps its small items, e.g. one face detection per frame, as the sequential run would). An
exception in a worker is raised again, unchanged, in the main thread; the main thread alone
takes signals, and closing either object stops and joins its thread (nothing is left running).
With ``depth=0`` both run inline, in the caller's thread: the sequential reference.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()  # end of the stream, in either direction
_POLL_SECONDS = 0.1  # how often a blocked queue operation looks at the stop flag


class _Worker:
    """A thread, a bounded queue, a stop flag and the first error the thread raised."""

    def __init__(self, depth: int, name: str) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        raise NotImplementedError

    def put(self, item: object) -> bool:
        """Queue ``item``, waiting for room; False if the other side stopped first."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def join(self) -> None:
        self.stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()


class Prefetch(_Worker, Generic[T]):
    """Iterate ``items`` in a thread, at most ``depth`` ahead of the consumer."""

    def __init__(self, items: Iterable[T], depth: int = 1, name: str = "prefetch") -> None:
        super().__init__(depth, name)
        self._items = items
        self._inline = iter(items) if depth == 0 else None
        self._done = False
        if self._inline is None:
            self.thread.start()

    def _main(self) -> None:
        try:
            for item in self._items:
                if not self.put(item):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            self.error = err
        self.put(_END)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._inline is not None:
            return next(self._inline)
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self.queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    item = _END  # the thread was stopped without leaving an end marker
                    break
        if item is _END:
            self._done = True
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread and wait for it (the iterable it was reading can then be closed safely)."""
        self.join()


class Drain(_Worker, Generic[T]):
    """Hand items to ``consume`` in a thread, at most ``depth`` waiting; its errors surface in ``put``/``finish``."""

    def __init__(self, consume: Callable[[T], None], depth: int = 1, name: str = "drain") -> None:
        super().__init__(depth, name)
        self._consume = consume
        self._inline = depth == 0
        if not self._inline:
            self.thread.start()

    def _main(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return
            try:
                self._consume(item)
            except BaseException as err:  # noqa: BLE001 - raised again in the main thread
                self.error = err
                self.stop.set()
                return

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def submit(self, item: T) -> None:
        """Queue ``item`` (waiting for room), or consume it now when inline; a worker's error is raised here."""
        if self._inline:
            self._consume(item)
            return
        self._raise_error()
        self.put(item)
        self._raise_error()

    def finish(self) -> None:
        """Wait until every queued item is consumed; raise the worker's error if it had one."""
        if not self._inline:
            self.put(_END)
            self.thread.join()
        self._raise_error()

    def close(self) -> None:
        """Stop without finishing (the caller is unwinding an error) and wait for the thread."""
        self.join()


class Backlog(Generic[T]):
    """Collect ``items`` into a list in a thread (``background``) or at once (not), readable while it grows.

    Iterating yields the items in order, waiting for those not collected yet; :meth:`wait` returns
    the whole list. The thread's error is raised, unchanged, to whoever reads past the last item
    collected before it. ``close`` stops the thread between two items and joins it.
    """

    def __init__(self, items: Iterable[T], background: bool = True, name: str = "backlog") -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()
        self._finished = False
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(items,), name=name, daemon=True)
        if background:
            self.thread.start()
        else:
            self._main(items)

    def _main(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                with self._changed:
                    self._items.append(item)
                    self._changed.notify_all()
                if self._stop.is_set():
                    return
        except BaseException as err:  # noqa: BLE001 - raised to the reader
            self.error = err
        finally:
            with self._changed:
                self._finished = True
                self._changed.notify_all()

    @property
    def count(self) -> int:
        """Items collected so far."""
        return len(self._items)

    @property
    def finished(self) -> bool:
        """Whether every item is collected (or the thread failed or was stopped)."""
        return self._finished

    def _item(self, index: int) -> T:
        with self._changed:
            self._changed.wait_for(lambda: index < len(self._items) or self._finished)
            if index < len(self._items):
                return self._items[index]
        if self.error is not None:
            raise self.error
        raise IndexError(index)

    def __iter__(self) -> Iterator[T]:
        index = 0
        while True:
            try:
                item = self._item(index)
            except IndexError:
                return
            yield item
            index += 1

    def wait(self) -> list[T]:
        """Every item, once the thread is done; its error if it failed."""
        with self._changed:
            self._changed.wait_for(lambda: self._finished)
        if self.error is not None:
            raise self.error
        return self._items

    def close(self) -> None:
        """Stop collecting after the current item and wait for the thread."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

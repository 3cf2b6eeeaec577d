"""How a step's items run: in this process, in a pool of worker processes, or as Ray tasks.

Every executor maps :func:`run_item` over the items and yields (item, records, failure) as they
finish. ``local`` is a process pool of ``workers`` (spawned: no inherited model state; in-process
when ``workers`` is 1); ``ray`` runs the same function as Ray tasks (the output folder must be
shared by the cluster's nodes). Models are built once per worker process: steps cache them with
``functools.lru_cache``.

SIGINT/SIGTERM stop a run: the items in progress unwind (their ffmpeg children are killed, their
temporary files removed) and are never recorded, so a rerun does them again. Pool workers start
with the signals blocked (an interrupt during their imports cannot end them with a traceback), and
the parent sends them SIGTERM when it stops, so a ``kill`` of the pipeline alone stops them too.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Iterator

import av.logging

from latentsync.cli import STOP_SIGNALS, Interrupted, signals_blocked
from latentsync.errors import LatentSyncError, StoppedBySignal
from latentsync.paths import PROJECT_ROOT
from preprocess.runner import Item, Process, Record, dropped


def quiet_media_libraries() -> None:
    """FFmpeg's encoder statistics and scenedetect's per-video lines would bury the progress bars."""
    av.logging.set_libav_level(av.logging.ERROR)  # not set_level: its Python callback can deadlock decoder threads
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)


# In a pool worker: the stop signal received (0: none), and whether an item is being processed.
_stop_signal = 0
_busy = False


def _worker_signal(signum: int, frame) -> None:
    """A worker stops the item in progress (its cleanup runs) and refuses new ones; an idle worker
    just waits for the pool to shut it down (raising there would print a traceback)."""
    global _stop_signal
    _stop_signal = signum
    if _busy:
        raise Interrupted(signum)


def _start_worker() -> None:
    """Pool initializer: the stop signals, blocked since the worker started (see signals_blocked), get
    their handler, then are let through."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _worker_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    quiet_media_libraries()


def run_item(process: Process, item: Item, settings) -> tuple[list[Record] | None, str | None]:
    """Run ``process`` on one item; user-facing failures become a drop, bugs and killed helpers a
    failure message (not recorded: a rerun retries). An interrupt propagates, never recorded."""
    global _busy
    if _stop_signal:
        raise Interrupted(_stop_signal)
    quiet_media_libraries()
    start = time.perf_counter()
    _busy = True
    try:
        records = process(item, settings)
    except StoppedBySignal as err:  # the run is being stopped (or ffmpeg was killed): not the source's fault
        return None, f"{item.source}: {err}"
    except LatentSyncError as err:
        records = dropped(item, f"error: {err}".splitlines()[0][:300])
    except Exception:  # a bug or an unexpected library failure: not recorded, retried by a rerun
        return None, f"{item.source}: {traceback.format_exc(limit=3)}"
    finally:
        _busy = False
    elapsed = time.perf_counter() - start
    for line in records:
        line.setdefault("seconds", round(elapsed / max(1, len(records)), 3))
    return records, None


class Executor:
    """Maps ``run_item`` over items; yields (item, records, failure) as they finish."""

    def map(self, process: Process, items: list[Item], settings, workers: int, gpu: bool) -> Iterator:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """A pool of ``workers`` processes (spawned: no inherited model state), or this process for 1.

    When the consumer stops (an interrupt, an error), pending items are cancelled and the workers
    are sent SIGTERM, so their items in progress unwind at once instead of running to the end.
    """

    def map(self, process: Process, items: list[Item], settings, workers: int, gpu: bool) -> Iterator:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield (item, *run_item(process, item, settings))
            return
        context = multiprocessing.get_context("spawn")
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context,
                                   initializer=_start_worker)
        futures = {}
        try:
            with signals_blocked():  # workers start with the stop signals blocked, until their handler is set
                futures = {pool.submit(run_item, process, item, settings): item for item in items}
            for future in as_completed(futures):
                yield (futures[future], *future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            for worker in set(multiprocessing.active_children()) - before:
                worker.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # joins the workers: their cleanup is done


class RayExecutor(Executor):
    """The same per-item function as Ray tasks on a cluster (``address``), or a local Ray instance."""

    def __init__(self, address: str | None = None, num_gpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise LatentSyncError(
                "--executor ray needs the optional package ray: `pip install -r requirements-ray.txt`"
            ) from err
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            options = {"address": address} if address else {"num_gpus": num_gpus}
            # Workers import this project from the same path as the driver (shared on a cluster).
            runtime_env = {"env_vars": {"PYTHONPATH": os.fspath(PROJECT_ROOT)}}
            ray.init(**options, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        self._task = ray.remote(run_item)

    def map(self, process: Process, items: list[Item], settings, workers: int, gpu: bool) -> Iterator:
        ray = self._ray
        gpus = 1 / max(1, workers) if gpu and ray.cluster_resources().get("GPU", 0) else 0
        task = self._task.options(num_cpus=1, num_gpus=gpus)
        pending = {task.remote(process, item, settings): item for item in items}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    yield (item, *ray.get(ref))
        finally:
            for ref in pending:  # stopped early: nothing more runs (a killed task's temporaries go on the next run)
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()

"""Run one preprocessing step over its items: resume, a record per item, a JSONL manifest, executors.

Every step is a picklable function ``process(item, settings) -> list[record]`` run once per item
(a video or a clip). Its output files are written under temporary names and renamed by the step;
when it returns, the runner stores the item's records as ``<output>/.state/<step>/<key>.json``
(again temp + rename), each record carrying the step's settings and a digest of what it read
(the input file's size and time, and the previous step's record). A rerun skips every item whose
stored records match and whose outputs still exist, so a finished set reruns without decoding
anything; an item interrupted at any moment, read from a changed file, or made with other settings
is done again: outputs have fixed names and are replaced, never duplicated. Outputs an earlier run
made that this run no longer makes (the source is gone, the item is dropped now, a setting changed
the clip count) are moved, never deleted, to ``<output>/superseded/<run>/``. The step's manifest
``<output>/manifests/<step>.jsonl`` is rewritten from the stored records at the end of the step.

Executors: ``local`` (a process pool of ``workers``; in-process when ``workers`` is 1) and
``ray`` (the same function as Ray tasks; the output folder must be shared by the cluster's nodes).
Models are built once per worker process: steps cache them with ``functools.lru_cache``.
SIGINT/SIGTERM stop a run: the items in progress unwind (their ffmpeg children are killed, their
temporary files removed) and are never recorded, so a rerun does them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import av.logging
from tqdm import tqdm

from latentsync.cli import STOP_SIGNALS, Interrupted, signals_blocked
from latentsync.errors import LatentSyncError, StoppedBySignal
from latentsync.paths import PROJECT_ROOT
from latentsync.utils.atomic import TEMP_PREFIX, WORK_PREFIX, atomic_output, owned_prefix, remove_stale

logger = logging.getLogger(__name__)

STATE_DIR = ".state"
MANIFEST_DIR = "manifests"
SUPERSEDED_DIR = "superseded"  # outputs of earlier runs that this run no longer makes (moved, never deleted)


@dataclass(frozen=True)
class Item:
    """One unit of work: ``key`` names it uniquely within its step (a relative path), ``source`` is
    the file it reads, ``data`` what the previous step learned about it (e.g. shot boundaries)."""

    key: str
    source: str
    data: dict = field(default_factory=dict, compare=False, hash=False)


Record = dict  # source, output, kept, reason, scores, duration_in, duration_out, seconds, settings, input (+ step extras)
Process = Callable[[Item, object], list[Record]]


def record(source: str, output: str | None, kept: bool, reason: str = "", **extra) -> Record:
    """A manifest line; ``extra`` holds scores, durations and step-specific fields."""
    return {"source": source, "output": output, "kept": kept, "reason": reason, **extra}


def dropped(item: Item, reason: str, **extra) -> list[Record]:
    return [record(item.source, None, False, reason, **extra)]


def work_folder(settings) -> tempfile.TemporaryDirectory:
    """A private working folder in ``settings.temp_dir``, named with this process's id (see latentsync.utils.atomic)."""
    return tempfile.TemporaryDirectory(prefix=owned_prefix(WORK_PREFIX), dir=settings.temp_dir)


def _state_path(output_dir: str, step: str, key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    stem = os.path.basename(key).replace(os.sep, "_")[:80]
    return os.path.join(output_dir, STATE_DIR, step, f"{stem}-{digest}.json")


def manifest_path(output_dir: str, step: str) -> str:
    return os.path.join(output_dir, MANIFEST_DIR, f"{step}.jsonl")


def _write_json(path: str, payload) -> None:
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f)


def _write_manifest(path: str, records: Iterable[Record]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        for line in records:
            f.write(json.dumps(line, sort_keys=True) + "\n")


def remove_stale_temporaries(folders: Iterable[str], temp_dir: str) -> list[str]:
    """Delete what a killed run of this pipeline left, and nothing else: temporary files
    (``.tmp-latentsync-<pid>-...``) anywhere in the folders it writes, and working folders
    (``latentsync-work-<pid>-...``) in ``temp_dir``, only where that process is gone."""
    removed = []
    for folder in folders:
        for sub, _, _ in os.walk(folder):
            removed += remove_stale(sub, TEMP_PREFIX)
    return removed + remove_stale(temp_dir, WORK_PREFIX)


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


@dataclass
class StepResult:
    records: list[Record]
    failed: list[str]
    processed: int  # items run in this invocation (not resumed from a previous one)
    seconds: float
    items: int


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


# --------------------------------------------------------------------------- records that are still current


def file_stamp(path: str) -> list[int] | None:
    """Size and modification time of ``path`` (None if it is gone): a changed input redoes its items."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def provenance(item: Item, settings, options: Sequence[str]) -> dict:
    """What an item's records depend on: the step's ``options`` and a digest of what it read (the
    input file's stamp and the previous step's record, which holds that step's own provenance)."""
    read = json.dumps({"source": item.source, "stamp": file_stamp(item.source), "upstream": item.data},
                      sort_keys=True, default=str)
    return {"settings": {name: getattr(settings, name) for name in options},
            "input": hashlib.sha1(read.encode()).hexdigest()[:16]}


def _current(records: list[Record], wanted: dict) -> bool:
    """Stored records still stand: made from the same input with the same settings, outputs still there."""
    if not isinstance(records, list) or not records:
        return False
    for line in records:
        if line.get("settings") != wanted["settings"] or line.get("input") != wanted["input"]:
            return False
        if line.get("kept") and line.get("output") and not os.path.isfile(line["output"]):
            return False
    return True


class Superseded:
    """Outputs of earlier runs that this run no longer makes: moved to ``superseded/<run>/`` under the
    output folder, keeping their relative path (never deleted: the source may be gone)."""

    def __init__(self, output_dir: str, run_id: str) -> None:
        self.output_dir = output_dir
        self.root = os.path.join(output_dir, SUPERSEDED_DIR, run_id)
        self.moved: list[str] = []  # relative to output_dir

    def move(self, records: Iterable[Record], keep: set[str], folder: str | None) -> None:
        """Move the kept outputs of ``records`` that lie in ``folder`` (a step's own) and are not in ``keep``."""
        if folder is None:
            return
        owned = os.path.join(self.output_dir, folder)
        for line in records:
            if not isinstance(line, dict):
                continue
            path = line.get("output")
            if not (line.get("kept") and path and path not in keep and os.path.isfile(path)):
                continue
            if os.path.commonpath([os.path.abspath(path), owned]) != owned:
                continue  # not in the step's folder (a check step's output is its source): never touched
            relative = os.path.relpath(path, self.output_dir)
            target = os.path.join(self.root, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
            self.moved.append(relative)


def _stored(path: str) -> list[Record] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_step(
    name: str,
    process: Process,
    items: list[Item],
    settings,
    output_dir: str,
    executor: Executor,
    workers: int = 1,
    gpu: bool = False,
    options: Sequence[str] = (),
    folder: str | None = None,
    superseded: Superseded | None = None,
) -> StepResult:
    """Run ``process`` over ``items``, skipping those whose stored records are current (see
    :func:`provenance`); returns all records in item order. With ``superseded``, outputs in the
    step's ``folder`` that earlier runs made and this one does not are moved there."""
    start = time.perf_counter()
    stored: dict[str, list[Record]] = {}
    stale: dict[str, list[Record]] = {}
    wanted: dict[str, dict] = {}
    pending: list[Item] = []
    for item in items:
        wanted[item.key] = provenance(item, settings, options)
        records = _stored(_state_path(output_dir, name, item.key))
        if records is not None and _current(records, wanted[item.key]):
            stored[item.key] = records
        else:
            if isinstance(records, list):
                stale[item.key] = records
            pending.append(item)
    failed: list[str] = []
    with tqdm(total=len(items), initial=len(items) - len(pending), desc=name, unit="item", dynamic_ncols=True) as bar:
        for item, records, failure in executor.map(process, pending, settings, workers, gpu):
            if failure is not None:
                logger.error("step %s failed on %s (a rerun retries it)", name, failure)
                failed.append(item.source)
            else:
                for line in records:
                    line.update(wanted[item.key])
                _write_json(_state_path(output_dir, name, item.key), records)
                stored[item.key] = records
            bar.update(1)
    ordered = [line for item in items if item.key in stored for line in stored[item.key]]
    _write_manifest(manifest_path(output_dir, name), ordered)
    if superseded is not None:
        _supersede(name, items, stored, stale, output_dir, folder, superseded)
    return StepResult(ordered, failed, len(pending), time.perf_counter() - start, len(items))


def _supersede(name: str, items: list[Item], stored: dict, stale: dict, output_dir: str,
               folder: str | None, superseded: Superseded) -> None:
    """Move what earlier runs of step ``name`` made that this run does not: outputs of items redone
    with fewer or other outputs, and of items no longer there (their state files are removed)."""
    current = {line["output"] for records in stored.values() for line in records if line.get("output")}
    for key, records in stale.items():
        if key in stored:  # redone; a failed item keeps its old outputs until a rerun redoes it
            superseded.move(records, current, folder)
    state_dir = os.path.join(output_dir, STATE_DIR, name)
    known = {os.path.basename(_state_path(output_dir, name, item.key)) for item in items}
    for entry in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []:
        if entry.endswith(".json") and entry not in known:
            superseded.move(_stored(os.path.join(state_dir, entry)) or [], current, folder)
            os.remove(os.path.join(state_dir, entry))


def publish(src: str, dst: str) -> None:
    """Put a finished file at ``dst``: a hard link when both are on one file system, else a copy;
    either way through a temporary name, so ``dst`` is never half-written."""
    with atomic_output(dst) as tmp:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

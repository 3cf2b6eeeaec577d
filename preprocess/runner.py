"""Run one preprocessing step over its items: resume, a record per item, a JSONL manifest, executors.

Every step is a picklable function ``process(item, settings) -> list[record]`` run once per item
(a video or a clip). Its output files are written under temporary names and renamed by the step;
when it returns, the runner stores the item's records as ``<output>/.state/<step>/<key>.json``
(again temp + rename). A rerun skips every item that has that file, so a finished set reruns
without decoding anything, and an item interrupted at any moment is simply done again: outputs
have fixed names and are replaced, never duplicated. The step's manifest
``<output>/manifests/<step>.jsonl`` is rewritten from the stored records at the end of the step.

Executors: ``local`` (a process pool of ``workers``; in-process when ``workers`` is 1) and
``ray`` (the same function as Ray tasks; the output folder must be shared by the cluster's nodes).
Models are built once per worker process: steps cache them with ``functools.lru_cache``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import av.logging
from tqdm import tqdm

from latentsync.errors import LatentSyncError
from latentsync.paths import PROJECT_ROOT
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)

STATE_DIR = ".state"
MANIFEST_DIR = "manifests"
# Prefix of atomic_output's temporary files: left behind only by a killed run, removed on the next.
TEMP_PREFIX = ".tmp-"
# Prefix of the steps' working folders under --temp_dir; a killed run's are removed on the next.
WORK_PREFIX = "lsprep-"


@dataclass(frozen=True)
class Item:
    """One unit of work: ``key`` names it uniquely within its step (a relative path), ``source`` is
    the file it reads, ``data`` what the previous step learned about it (e.g. shot boundaries)."""

    key: str
    source: str
    data: dict = field(default_factory=dict, compare=False, hash=False)


Record = dict  # source, output, kept, reason, scores, duration_in, duration_out, seconds (+ step extras)
Process = Callable[[Item, object], list[Record]]


def record(source: str, output: str | None, kept: bool, reason: str = "", **extra) -> Record:
    """A manifest line; ``extra`` holds scores, durations and step-specific fields."""
    return {"source": source, "output": output, "kept": kept, "reason": reason, **extra}


def dropped(item: Item, reason: str, **extra) -> list[Record]:
    return [record(item.source, None, False, reason, **extra)]


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


def remove_stale_temporaries(output_dir: str, temp_dir: str) -> int:
    """Delete what a killed run left: atomic_output's temporary files under ``output_dir`` and the
    steps' working folders in ``temp_dir`` (only those names, which this code creates)."""
    pattern = os.path.join(glob.escape(output_dir), "**", TEMP_PREFIX + "*")
    stale = glob.glob(pattern, recursive=True, include_hidden=True)
    stale += glob.glob(os.path.join(glob.escape(temp_dir), WORK_PREFIX + "*"))
    for path in stale:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return len(stale)


def quiet_media_libraries() -> None:
    """FFmpeg's encoder statistics and scenedetect's per-video lines would bury the progress bars."""
    av.logging.set_libav_level(av.logging.ERROR)  # not set_level: its Python callback can deadlock decoder threads
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)


def run_item(process: Process, item: Item, settings) -> tuple[list[Record] | None, str | None]:
    """Run ``process`` on one item; user-facing failures become a drop, bugs a failure message."""
    quiet_media_libraries()
    start = time.perf_counter()
    try:
        records = process(item, settings)
    except LatentSyncError as err:
        records = dropped(item, f"error: {err}".splitlines()[0][:300])
    except Exception:  # a bug or an unexpected library failure: not recorded, retried by a rerun
        return None, f"{item.source}: {traceback.format_exc(limit=3)}"
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
    """A pool of ``workers`` processes (spawned: no inherited model state), or this process for 1."""

    def map(self, process: Process, items: list[Item], settings, workers: int, gpu: bool) -> Iterator:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield (item, *run_item(process, item, settings))
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context) as pool:
            futures = {pool.submit(run_item, process, item, settings): item for item in items}
            for future in as_completed(futures):
                yield (futures[future], *future.result())


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
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                item = pending.pop(ref)
                yield (item, *ray.get(ref))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def run_step(
    name: str,
    process: Process,
    items: list[Item],
    settings,
    output_dir: str,
    executor: Executor,
    workers: int = 1,
    gpu: bool = False,
) -> StepResult:
    """Run ``process`` over ``items``, skipping finished ones; returns all records in item order."""
    start = time.perf_counter()
    stored: dict[str, list[Record]] = {}
    pending: list[Item] = []
    for item in items:
        path = _state_path(output_dir, name, item.key)
        if os.path.isfile(path):
            with open(path) as f:
                stored[item.key] = json.load(f)
        else:
            pending.append(item)
    failed: list[str] = []
    with tqdm(total=len(items), initial=len(items) - len(pending), desc=name, unit="item", dynamic_ncols=True) as bar:
        for item, records, failure in executor.map(process, pending, settings, workers, gpu):
            if failure is not None:
                logger.error("step %s failed on %s (a rerun retries it)", name, failure)
                failed.append(item.source)
            else:
                _write_json(_state_path(output_dir, name, item.key), records)
                stored[item.key] = records
            bar.update(1)
    ordered = [line for item in items if item.key in stored for line in stored[item.key]]
    _write_manifest(manifest_path(output_dir, name), ordered)
    return StepResult(ordered, failed, len(pending), time.perf_counter() - start, len(items))


def publish(src: str, dst: str) -> None:
    """Put a finished file at ``dst``: a hard link when both are on one file system, else a copy;
    either way through a temporary name, so ``dst`` is never half-written."""
    with atomic_output(dst) as tmp:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

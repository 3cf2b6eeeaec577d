"""Run one preprocessing step over its items: resume, a record per item, a JSONL manifest, superseded outputs.

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

How items run (a process pool, Ray, interrupts) is :mod:`preprocess.executors`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from tqdm import tqdm

from latentsync.utils.files import TEMP_PREFIX, WORK_PREFIX, atomic_output, owned_prefix, remove_stale

if TYPE_CHECKING:
    from preprocess.executors import Executor

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
    """A private working folder in ``settings.temp_dir``, named with this process's id (see latentsync.utils.files)."""
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


@dataclass
class StepResult:
    records: list[Record]
    failed: list[str]
    processed: int  # items run in this invocation (not resumed from a previous one)
    seconds: float
    items: int


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

"""Result tables: one row per video (a failed video is a row with its reason) plus a summary.

Written as CSV and JSON (atomically) and rendered as Markdown for the terminal. Protocols (how the
numbers were measured: which media route, which frames) head the summary and are repeated as
columns of the CSV, so each file alone says which protocol produced its numbers.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from latentsync.cli import run_main
from latentsync.errors import LatentSyncError, OutputError, error_line
from latentsync.utils.files import atomic_output, check_writable_folder
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def mean_of(rows: Iterable[Row], key: str) -> float | None:
    """Mean of ``key`` over rows that have a finite value for it (failed rows have none)."""
    values = [row[key] for row in rows if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
    return sum(values) / len(values) if values else None


def summarise(rows: Sequence[Row], keys: Sequence[str]) -> Row:
    """Means of ``keys`` plus counts of scored and failed videos."""
    summary: Row = {key: mean_of(rows, key) for key in keys}
    summary["videos"] = len(rows)
    summary["failed"] = sum(1 for row in rows if row.get("error"))
    return summary


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def render(rows: Sequence[Row], summary: Row, columns: Sequence[str]) -> str:
    """Summary table (metric | value) followed by the per-video table."""
    head = markdown_table([{"metric": k, "value": v} for k, v in summary.items()], ["metric", "value"])
    return head + "\n\n" + markdown_table(rows, columns)


def write_report(
    stem: str | os.PathLike, rows: Sequence[Row], summary: Row, columns: Sequence[str],
    protocol_keys: Sequence[str] = (),
) -> list[str]:
    """Write ``<stem>.csv`` (per-video rows), ``<stem>.json`` (rows and summary) and ``<stem>.md``; return the paths.

    The summary entries named by ``protocol_keys`` are also CSV columns, the same on every row.
    """
    stem = os.fspath(stem)
    paths = [stem + ".csv", stem + ".json", stem + ".md"]
    protocols = {key: summary[key] for key in protocol_keys}
    with atomic_output(paths[0]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        fieldnames = [*columns, *protocols]
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{c: _cell({**row, **protocols}.get(c)) for c in fieldnames} for row in rows])
    with atomic_output(paths[1]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"summary": _jsonable(summary), "rows": [_jsonable(row) for row in rows]}, f, indent=2)
    with atomic_output(paths[2]) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(render(rows, summary, columns) + "\n")
    return paths


def _jsonable(row: Mapping[str, Any]) -> Row:
    # JSON has no infinities (an exact PSNR): write them as strings.
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def publish(
    rows: Sequence[Row], summary: Row, columns: Sequence[str], output: str | None, protocol_keys: Sequence[str] = ()
) -> str:
    """Write the table files when ``output`` is given (logging each path); return the Markdown to print."""
    if output:
        for path in write_report(output, rows, summary, columns, protocol_keys):
            logger.info("wrote %s", path)
    return render(rows, summary, columns)


def check_output(path: str | os.PathLike | None, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: a ``folder`` flag names a folder to
    write into (created if missing); the others name a file or a file stem, whose folder must accept files."""
    if not path:
        return
    if folder:
        check_writable_folder(path, flag)
        return
    if os.path.isdir(path):
        raise OutputError(f"{flag} {os.fspath(path)!r} is an existing folder; name a file in it")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), flag)


def run_guarded(work: Callable[[], tuple[str, int]], stdout: TextIO) -> int:
    """Configure logging, run a CLI's ``work`` (its result text and exit code), write the text; return the code.

    A failure of the whole run (bad arguments, a missing model file) is one ``error:`` line and code 1; Ctrl-C
    or SIGTERM one line and 128 + signal (result files are written whole or not at all).
    """
    configure_logging()

    def body() -> int:
        text, code = work()
        stdout.write(text + "\n")
        return code

    return run_main(body, "result files are written whole or not at all: none is half-written",
                    errors=(LatentSyncError, ValueError), line=error_line)


def table_result(rows: Sequence[Row], means: Sequence[str], columns: Sequence[str], output: str | None,
                 extra: Row | None = None, protocols: Row | None = None) -> tuple[str, int]:
    """Summarise (``protocols``, then ``extra``, then the means of ``means``), publish, and exit 1 only when
    every video failed. ``protocols`` (e.g. ``{"sync_protocol": "upstream"}``) are CSV columns too."""
    protocols = protocols or {}
    summary = {**protocols, **(extra or {}), **summarise(rows, means)}
    return publish(rows, summary, columns, output, list(protocols)), 0 if summary["failed"] < len(rows) else 1

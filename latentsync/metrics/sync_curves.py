"""Per-frame SyncNet distance and confidence curves: where in a video the sync fails.

A curve point is one 5-frame window at the track's chosen offset, placed at the window's first
frame: ``distance`` (lower is better) and ``confidence`` (median of the offset curve minus the
distance, median-filtered over 9 windows; higher is better).
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from latentsync.errors import MediaError
from latentsync.metrics.report import Row
from latentsync.metrics.sync_confidence import VideoSync
from latentsync.utils.plotting import save_chart

CURVE_COLUMNS = ["video", "track", "frame", "offset", "distance", "confidence"]
Curves = Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # label -> (frames, distance, confidence)


def curve_rows(video: str, sync: VideoSync) -> list[Row]:
    """One row per scored window of every track of ``video``."""
    rows = []
    for number, (track, result) in enumerate(zip(sync.tracks, sync.results)):
        for i, (dist, conf) in enumerate(zip(result.frame_dists, result.frame_confidence)):
            rows.append({"video": video, "track": number, "frame": track.start + i, "offset": result.offset,
                         "distance": float(dist), "confidence": float(conf)})
    return rows


def curves_of(rows: Sequence[Row], prefix: str = "") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Group rows into curves labelled ``[prefix ]video-stem #track (offset k)``."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        stem = os.path.splitext(os.path.basename(str(row["video"])))[0]
        label = f"{prefix}{stem} #{row['track']} (offset {row['offset']})"
        groups[label].append(row)
    return {
        label: tuple(np.array([float(r[key]) for r in group]) for key in ("frame", "distance", "confidence"))
        for label, group in groups.items()
    }


def read_curve_rows(path: str | os.PathLike) -> list[Row]:
    """Rows of a curves CSV written by ``eval.syncnet_detect``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"curves file not found: {path!r}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(column not in rows[0] for column in CURVE_COLUMNS):
        raise MediaError(f"{path!r} is not a curves file (columns {', '.join(CURVE_COLUMNS)})")
    return rows


def draw_curves(path: str | os.PathLike, curves: Curves, title: str | None = None) -> None:
    """PNG with the distance panel over the confidence panel, one line per curve, against the frame."""
    panels = {
        "SyncNet distance": {label: (frames, dist) for label, (frames, dist, _) in curves.items()},
        "SyncNet confidence": {label: (frames, conf) for label, (frames, _, conf) in curves.items()},
    }
    save_chart(path, panels, title, xlabel="frame")

"""Step 4: cut every shot into clips of 5-10 s at exact frames (re-encoded, not stream-copied).

A shot shorter than the minimum is dropped; a longer one is split into the fewest clips of at
most the maximum length, all of nearly equal length (so none is shorter than the minimum).
"""

from __future__ import annotations

import math
import os

from latentsync.media.mux import transcode_video
from preprocess.runner import Item, Record, record
from preprocess.settings import FPS, SAMPLE_RATE

FOLDER = "segmented"  # under the output folder


def split_evenly(start: int, stop: int, min_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """[start, stop) cut into ceil(n / max_frames) nearly equal clips; [] when n < min_frames."""
    length = stop - start
    if length < min_frames:
        return []
    count = math.ceil(length / max_frames)
    bounds = [start + round(k * length / count) for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def clip_path(settings, key: str, index: int) -> str:
    return os.path.join(settings.output_dir, FOLDER, f"{os.path.splitext(key)[0]}_{index:03d}.mp4")


def segment(item: Item, settings) -> list[Record]:
    min_frames = math.ceil(settings.min_clip_seconds * FPS)
    max_frames = math.floor(settings.max_clip_seconds * FPS)
    records, index = [], 0
    for shot_start, shot_stop in item.data["shots"]:
        seconds = (shot_stop - shot_start) / FPS
        clips = split_evenly(shot_start, shot_stop, min_frames, max_frames)
        if not clips:
            records.append(record(item.source, None, False, f"shot shorter than {settings.min_clip_seconds:g} s",
                                  frames=[shot_start, shot_stop], duration_in=seconds))
        for start, stop in clips:
            out = clip_path(settings, item.key, index)
            transcode_video(item.source, out, fps=FPS, sample_rate=SAMPLE_RATE, frames=(start, stop))
            records.append(record(item.source, out, True, frames=[start, stop], duration_in=(stop - start) / FPS,
                                  duration_out=(stop - start) / FPS))
            index += 1
    return records

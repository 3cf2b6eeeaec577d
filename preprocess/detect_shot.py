"""Step 3: shot boundaries with scenedetect's content detector (frame ranges; no files written)."""

from __future__ import annotations

from scenedetect import ContentDetector, detect

from latentsync.media.probe import probe_video
from preprocess.runner import Item, Record, record

def find_shots(path: str, threshold: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the shots of a 25 fps video; the whole video if there is no cut."""
    scenes = detect(path, ContentDetector(threshold=threshold), backend="pyav")
    if scenes:
        return [(start.frame_num, end.frame_num) for start, end in scenes]
    return [(0, probe_video(path).num_frames)]


def detect_shots(item: Item, settings) -> list[Record]:
    shots = find_shots(item.source, settings.shot_threshold)
    duration = item.data.get("duration_out")
    return [record(item.source, item.source, True, shots=shots, duration_in=duration, duration_out=duration)]

"""Step 7: hyperIQA quality of each clip (the evaluation's scorer and protocol); drop low scores."""

from __future__ import annotations

import functools

from latentsync.metrics.image_quality import video_quality
from latentsync.models.hyperiqa import HyperNet
from latentsync.utils.device import pick_device
from preprocess.runner import Item, Record, dropped, record


@functools.lru_cache(maxsize=1)
def quality_model(path: str, device: str) -> HyperNet:
    """hyperIQA, loaded once per worker process."""
    return HyperNet.from_file(path, pick_device(device))


def filter_quality(item: Item, settings) -> list[Record]:
    score = video_quality(quality_model(settings.quality_model_path, settings.device), item.source)
    scores = {"hyperiqa": round(score, 3)}
    duration = item.data.get("duration_out")
    if score < settings.quality_threshold:
        return dropped(item, f"hyperIQA under {settings.quality_threshold:g}", scores=scores, duration_in=duration)
    return [record(item.source, item.source, True, scores=scores, duration_in=duration, duration_out=duration)]

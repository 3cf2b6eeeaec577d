"""Step 2: re-encode to 25 fps and 16 kHz mono, keeping only the first video and audio stream."""

from __future__ import annotations

import os

from latentsync.media.mux import transcode_video
from latentsync.media.probe import probe_video
from preprocess.runner import Item, Record, dropped, record
from preprocess.settings import FPS, SAMPLE_RATE

FOLDER = "resampled"  # under the output folder


def output_path(settings, key: str) -> str:
    """``resampled/<key>`` as .mp4 (``a.mov`` -> ``a_mov.mp4``, so it cannot collide with ``a.mp4``)."""
    stem, extension = os.path.splitext(key)
    suffix = "" if extension.lower() == ".mp4" else "_" + extension[1:].lower()
    return os.path.join(settings.output_dir, FOLDER, stem + suffix + ".mp4")


def resample(item: Item, settings) -> list[Record]:
    out = output_path(settings, item.key)
    transcode_video(item.source, out, fps=FPS, sample_rate=SAMPLE_RATE)
    info = probe_video(out)
    if info.num_frames == 0:
        return dropped(item, "no frames left after resampling")
    return [record(item.source, out, True, duration_in=item.data.get("duration_out"), duration_out=info.duration)]

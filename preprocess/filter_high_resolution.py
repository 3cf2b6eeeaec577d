"""Optional step (upstream's high-resolution filter): keep clips whose face is at least
``resolution`` pixels wide and high, checked on one frame per second, so no aligned face is upscaled."""

from __future__ import annotations

from itertools import islice

from latentsync.face.alignment import FaceAligner
from latentsync.media.reader import VideoReader
from preprocess.align_faces import face_detector
from preprocess.runner import Item, Record, dropped, record
from preprocess.settings import FPS


def filter_resolution(item: Item, settings) -> list[Record]:
    aligner = FaceAligner(settings.resolution, face_detector(settings.face_detector, settings.device), batch_size=1)
    sampled = islice(VideoReader(item.source, fps=FPS), 0, None, FPS)
    sizes = [min(d.box[2] - d.box[0], d.box[3] - d.box[1]) if d else 0.0 for _, d in aligner.track(sampled)]
    duration = item.data.get("duration_out")
    scores = {"min_face_px": round(min(sizes), 1) if sizes else 0.0}
    if not sizes or min(sizes) < settings.resolution:
        return dropped(item, f"face smaller than {settings.resolution} px", scores=scores, duration_in=duration)
    return [record(item.source, item.source, True, scores=scores, duration_in=duration, duration_out=duration)]

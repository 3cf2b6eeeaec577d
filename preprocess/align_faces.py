"""Step 5: the face of every frame aligned to ``resolution``², with the face stage inference uses.

Detection, tracking, alignment and crop smoothing are :class:`latentsync.face.alignment.FaceAligner`'s.
A frame where the face is missed is cropped with the nearest frame's matrix (so the clip stays
continuous). A clip is dropped when the face is missed in more than ``max_face_lost`` of its frames,
when the tracked face jumps (another person), when the alignment is implausible: the three
landmarks fit the template badly, or most sampled aligned crops do not show exactly one face
(upstream's "incorrectly affined" check, which asks it of every frame), or when the aligned crops
jump: the largest change between consecutive crops is over ``JUMP_FACTOR`` times the clip's own
90th percentile of changes (a re-framing a model would learn as motion; see :func:`alignment_jump`).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Iterable, Sequence

import cv2
import numpy as np

from latentsync.face.alignment import FaceAligner
from latentsync.face.detection import FaceDetection, make_face_detector
from latentsync.face.tracking import identity_breaks
from latentsync.face.warp import similarity_from_points
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from preprocess.runner import Item, Record, dropped, record, work_folder
from preprocess.settings import FPS

FOLDER = "affine_transformed"  # under the output folder


# Consecutive aligned crops are compared as grey THUMB_SIDE² copies (mean absolute difference, grey
# levels). A clip jumps where one change exceeds JUMP_FACTOR times its 90th percentile of changes and
# JUMP_FLOOR levels (below that, a still clip's codec noise). Measured: smooth clips (a 1080x1920 pan +
# zoom, synthetic talking heads with mouths opening) peak at <= 1.6x their 90th percentile; the
# re-framings that 64-frame detection batches used to cause were 4.9x on the pan and 2.8-5.5x on
# real footage (issue 21); a re-framing cut inside a clip is far above (tests/preprocess).
THUMB_SIDE = 64
JUMP_FACTOR = 2.5
JUMP_FLOOR = 4.0


def grey_thumbnail(face: np.ndarray) -> np.ndarray:
    """A small grey float32 copy of an aligned RGB crop, for measuring how much crops change."""
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def thumbnail_changes(thumbs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean absolute change (grey levels) from each :func:`grey_thumbnail` to the next (one value fewer)."""
    return np.array([np.abs(b - a).mean() for a, b in zip(thumbs, thumbs[1:])], dtype=np.float64)


def crop_changes(faces: Iterable[np.ndarray]) -> np.ndarray:
    """Mean absolute change (grey levels) from each aligned crop to the next; one value fewer than crops."""
    return thumbnail_changes([grey_thumbnail(face) for face in faces])


def alignment_jump(changes: np.ndarray) -> tuple[int, float, float] | None:
    """(i, change, 90th percentile) when the crop changes most from frame i to i + 1 and that change is a
    jump relative to the clip's own changes (over JUMP_FACTOR x their 90th percentile and JUMP_FLOOR); else None."""
    if len(changes) < 2:
        return None
    i = int(np.argmax(changes))
    typical = float(np.percentile(changes, 90))
    if changes[i] > max(JUMP_FACTOR * typical, JUMP_FLOOR):
        return i, float(changes[i]), typical
    return None


@functools.lru_cache(maxsize=2)
def face_detector(name: str, device: str):
    """One detector per worker process (models load once)."""
    return make_face_detector(name, device=device)


def output_path(settings, key: str) -> str:
    return os.path.join(settings.output_dir, FOLDER, key)


def alignment_residual(detection: FaceDetection, template: np.ndarray) -> float:
    """How badly the three landmarks fit the template under the best similarity, in brow distances."""
    landmarks = np.round(detection.landmarks).astype(np.float32)
    matrix, _ = similarity_from_points(landmarks, template)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    return float(np.abs(mapped - template).max() / np.linalg.norm(template[1] - template[0]))


def faces_in_crop(aligner: FaceAligner, face: np.ndarray) -> int:
    """Faces the detector finds in an aligned crop, padded by half its size on each side (detectors
    miss faces that fill the whole image)."""
    pad = aligner.resolution // 2
    padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127))
    return len(aligner.detector.detect(padded))


def _write_aligned(
    aligner: FaceAligner, reader: VideoReader, writer: VideoWriter, allowed_misses: int, check_every: int
) -> dict:
    """Stream the clip through the aligner into ``writer``; returns what the drop rules need."""
    detections, waiting, last_matrix, residual, checks, thumbs = [], [], None, 0.0, [], []
    template = aligner.restorer.face_template

    def write(face: np.ndarray) -> None:
        writer.write(face)
        thumbs.append(grey_thumbnail(face))

    for index, aligned in enumerate(aligner.align_frames(reader)):
        detections.append(aligned.detection)
        if not aligned.found:
            if last_matrix is None:  # no face yet: hold the frame until the first face gives a matrix
                waiting.append(aligned.frame)
                if len(waiting) > allowed_misses:
                    break
            else:
                write(aligner.crop(aligned.frame, last_matrix))
            continue
        for frame in waiting:
            write(aligner.crop(frame, aligned.matrix))
        waiting, last_matrix = [], aligned.matrix
        residual = max(residual, alignment_residual(aligned.detection, template))
        if index % check_every == 0:
            checks.append(faces_in_crop(aligner, aligned.face))
        write(aligned.face)
    return {"detections": detections, "residual": residual, "checks": checks, "changes": thumbnail_changes(thumbs)}


def align_clip(item: Item, settings) -> list[Record]:
    aligner = FaceAligner(settings.resolution, face_detector(settings.face_detector, settings.device))
    reader = VideoReader(item.source, fps=FPS)
    total = len(reader)
    allowed = math.floor(settings.max_face_lost * total)
    out = output_path(settings, item.key)
    duration = total / FPS
    with work_folder(settings) as tmp:
        silent = os.path.join(tmp, "video.mp4")
        try:
            with VideoWriter(silent, FPS, settings.resolution, settings.resolution) as writer:
                found = _write_aligned(aligner, reader, writer, allowed, settings.check_every)
                missed = sum(d is None for d in found["detections"]) + total - len(found["detections"])
                reason = _drop_reason(found, missed, total, allowed, settings)
                if reason:
                    raise _Dropped(reason)
        except _Dropped as drop:
            return dropped(item, str(drop), duration_in=duration, scores=_scores(found, missed, total))
        mux_audio(silent, item.source, out)
    return [record(item.source, out, True, duration_in=duration, duration_out=duration,
                   scores=_scores(found, missed, total))]


class _Dropped(Exception):
    """Leaves the writer's block so that nothing is published."""


def _drop_reason(found: dict, missed: int, total: int, allowed: int, settings) -> str:
    if missed == total:
        return "no face"
    if missed > allowed:
        return f"face lost in {missed / total:.0%} of frames (> {settings.max_face_lost:.0%})"
    if identity_breaks(found["detections"]) > 0:
        return "tracked person changed"
    bad_checks = sum(n != 1 for n in found["checks"])
    if found["residual"] > settings.max_alignment_residual or bad_checks * 2 > len(found["checks"]):
        return "implausible alignment"
    jump = alignment_jump(found["changes"])
    if jump is not None:
        index, change, typical = jump
        return (f"aligned crops jump at frame {index + 1} (change {change:.1f} > {JUMP_FACTOR:g} x the clip's "
                f"90th percentile {typical:.1f})")
    return ""


def _scores(found: dict, missed: int, total: int) -> dict:
    return {
        "face_lost": round(missed / total, 4),
        "identity_breaks": identity_breaks(found["detections"]),
        "alignment_residual": round(found["residual"], 4),
        "faces_in_checked_crops": found["checks"],
        "largest_crop_change": round(float(found["changes"].max()), 2) if len(found["changes"]) else 0.0,
        "p90_crop_change": round(float(np.percentile(found["changes"], 90)), 2) if len(found["changes"]) else 0.0,
    }

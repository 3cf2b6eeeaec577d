"""The face detection pass of one video run: detection + tracking over the input frames, ahead of the sync pass.

It runs in a thread of its own when the stages overlap (else to its end first), over frames
shrunk for the detector while decoding; its detections are read, in order, by the sync pass as
they arrive. It needs no model but the detector, so a run may start it before the networks are
loaded. Its progress is reported and its outcome (no face at all, a ``face_index`` beyond the
faces found) checked from the thread that runs the video, so progress hooks are only ever called
from there.
"""

from __future__ import annotations

import logging
import threading
import weakref
from itertools import islice
from typing import Iterable, Iterator

import numpy as np

from latentsync.errors import NoFaceError
from latentsync.face.alignment import FaceAligner
from latentsync.face.detection import FaceDetection, FaceDetector
from latentsync.media.reader import VideoReader
from latentsync.pipelines.overlap import Backlog
from latentsync.pipelines.progress import ProgressHook

logger = logging.getLogger(__name__)


class CountingDetector:
    """A face detector that remembers the most faces it saw in one frame (for error messages).

    Calls go to the wrapped detector one at a time: detector back-ends hold native graphs that are
    not safe to drive from two threads, and two runs may share one loaded detector.
    """

    _locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one lock per detector object
    _locks_guard = threading.Lock()

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self.most_faces = 0
        with self._locks_guard:
            self._lock = self._locks.setdefault(detector, threading.Lock())

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        return self.detect_batch([frame], consecutive=False)[0]

    def detect_batch(self, frames: Iterable[np.ndarray], consecutive: bool = True) -> list[list[FaceDetection]]:
        with self._lock:
            found = self.detector.detect_batch(frames, consecutive)
        self.most_faces = max([self.most_faces, *map(len, found)])
        return found


class FacePass:
    """Detection + tracking of one video's first ``used`` frames, read while it runs (see the module docstring)."""

    def __init__(
        self,
        reader: VideoReader,
        used: int,
        aligner: FaceAligner,
        counting: CountingDetector,
        face_index: int | None,
        progress: ProgressHook,
        background: bool,
    ) -> None:
        self.counting = counting
        self.face_index = face_index
        self.video_path = reader.path
        self.used = used
        # Overlapped: progress is reported from the caller's thread by check(); else as the frames are taken.
        self.progress = progress if background else None
        self._reported = False
        self._checked = False
        # The detector sees shrunk frames, scaled while decoding; detections are in full-frame pixels.
        shrunk = islice(reader.frames(aligner.options.detect_max_side), used)
        counted = _counted(shrunk, used, "faces", None if background else progress)
        tracked = (d for _, d in aligner.track(counted, frame_size=(reader.width, reader.height)))
        self.detections: Backlog[FaceDetection | None] = Backlog(tracked, background=background, name="faces")

    def check(self, wait: bool = False) -> None:
        """Report progress; once the pass has ended (``wait``: wait for that), raise NoFaceError if the
        face was in no frame, else log how many frames have it."""
        if self._checked:
            return
        if self.progress is not None and not self._reported:  # the stage starts for the caller here
            self._reported = True
            self.progress("faces", 0, self.used)
        if not (wait or self.detections.finished):
            if self.progress is not None:
                self.progress("faces", self.detections.count, self.used)
            return
        detections = self.detections.wait()
        self._checked = True
        if self.progress is not None:
            self.progress("faces", self.used, self.used)
        if self.face_index is not None and self.counting.most_faces and not any(d is not None for d in detections):
            raise NoFaceError(
                f"face_index {self.face_index} asks for face {self.face_index + 1} from the left, but at most "
                f"{self.counting.most_faces} face(s) were found in a frame of {self.video_path!r} (faces count from 0)"
            )
        with_face = sum(d is not None for d in detections)
        if with_face == 0:
            raise NoFaceError(
                f"no face found in any of the {self.used} frames of {self.video_path!r}; "
                "use a video where the face is visible and frontal"
            )
        logger.info("face found in %d of %d input frames", with_face, self.used)

    def close(self) -> None:
        """Stop the detection thread (between two batches) and wait for it."""
        self.detections.close()


def _counted(items: Iterator, total: int, stage: str, progress: ProgressHook | None) -> Iterator:
    """``items`` unchanged, telling ``progress`` how many have been taken."""
    if progress is None:
        yield from items
        return
    progress(stage, 0, total)
    done = 0
    for item in items:
        yield item
        done += 1
        progress(stage, done, total)

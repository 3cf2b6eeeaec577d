"""Which source frame goes to which output frame, and a disk spill for replaying the video.

The output has one frame per audio frame (``ceil(seconds * fps)``). A video shorter than the
audio is played forward, backward, forward, ... (each turn repeats the end frame, as upstream
does); a longer one is cut. Output frames are processed in clips of the UNet's ``num_frames``.
"""

from __future__ import annotations

import math
import os

import numpy as np

VIDEO_FPS = 25  # the rate the models were trained at; every input is resampled to it


def output_frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Frames covering ``num_samples`` of audio at ``fps``: ceil(duration * fps), at least 1."""
    return max(1, math.ceil(num_samples * fps / sample_rate - 1e-9))


def pingpong_index(k: int, length: int) -> int:
    """Source frame for output frame ``k`` when a ``length``-frame video plays forward then backward."""
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    k %= 2 * length
    return k if k < length else 2 * length - 1 - k


def clip_bounds(num_frames: int, clip_length: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive clips; the last one may be shorter."""
    return [(start, min(start + clip_length, num_frames)) for start in range(0, num_frames, clip_length)]


def padded_positions(length: int, clip_length: int) -> list[int]:
    """Positions 0..length-1 followed by a reflection of them up to ``clip_length`` entries.

    A partial last clip is filled with its own frames played backward (then forward ...), so the
    motion modules see a full-length, continuous clip; the padding's outputs are discarded.
    """
    if not 0 < length <= clip_length:
        raise ValueError(f"length must be in 1..{clip_length}, got {length}")
    return [pingpong_index(i, length) for i in range(clip_length)]


def face_donors(has_face: list[bool]) -> list[int] | None:
    """For each frame of a clip, the frame whose face it uses: its own, or the nearest one with a face (the
    earlier on a tie), so the clip stays continuous for the motion modules (the borrowed outputs are
    discarded); None when no frame has a face."""
    have = [i for i, face in enumerate(has_face) if face]
    if not have:
        return None
    return [i if face else min(have, key=lambda j: abs(j - i)) for i, face in enumerate(has_face)]


class FrameStore:
    """Fixed-size records (frame, aligned face, matrix) on disk, read back by index.

    Used when the audio outlasts the video: the first forward pass writes every source frame,
    the later backward/forward passes read them back. Reads use ``os.pread`` (no memory map), so
    resident memory stays at one record however long the video is.
    """

    def __init__(self, path: str, frame_shape: tuple[int, int, int], face_shape: tuple[int, int, int]) -> None:
        self.path = path
        self.frame_shape = frame_shape
        self.face_shape = face_shape
        self._frame_bytes = int(np.prod(frame_shape))
        self._face_bytes = int(np.prod(face_shape))
        # matrix (6 float32) + "has face" flag (1 float32)
        self._record = self._frame_bytes + self._face_bytes + 7 * 4
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, frame: np.ndarray, face: np.ndarray | None, matrix: np.ndarray | None) -> None:
        face_bytes = np.zeros(self.face_shape, np.uint8) if face is None else np.ascontiguousarray(face, np.uint8)
        extra = np.zeros(7, np.float32)
        if matrix is not None:
            extra[:6] = np.asarray(matrix, np.float32).reshape(6)
            extra[6] = 1.0
        payload = np.ascontiguousarray(frame, np.uint8).tobytes() + face_bytes.tobytes() + extra.tobytes()
        os.pwrite(self._fd, payload, self._count * self._record)
        self._count += 1

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} not in store of {self._count}")
        raw = os.pread(self._fd, self._record, index * self._record)
        frame = np.frombuffer(raw, np.uint8, self._frame_bytes).reshape(self.frame_shape)
        extra = np.frombuffer(raw, np.float32, 7, self._frame_bytes + self._face_bytes)
        if extra[6] == 0:
            return frame, None, None
        face = np.frombuffer(raw, np.uint8, self._face_bytes, self._frame_bytes).reshape(self.face_shape)
        return frame, face, extra[:6].reshape(2, 3).copy()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            os.remove(self.path)

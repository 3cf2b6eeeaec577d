"""The alignment step on clips made in the test: no seams at detection batch boundaries, and clips
whose aligned crops jump are dropped with the reason in their record."""

from __future__ import annotations

import os

import cv2
import numpy as np

from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from preprocess.align_faces import alignment_jump, align_clip, crop_changes
from preprocess.runner import Item
from preprocess.settings import Settings
from tests.face.test_alignment import assert_no_seams
from tools.synthetic_media import panning_face, write_wav


def _with_silence(path, frames, size, tmp_path) -> None:
    """An mp4 of ``frames`` with a silent audio track (the step keeps the clip's audio)."""
    silent, wav = tmp_path / "silent.mp4", tmp_path / "silence.wav"
    count = 0
    with VideoWriter(silent, 25, *size) as writer:
        for frame in frames:
            writer.write(frame)
            count += 1
    write_wav(wav, np.zeros(count * 640, np.float32))
    mux_audio(silent, wav, path)


def _align(path, tmp_path) -> tuple[dict, np.ndarray | None]:
    settings = Settings(output_dir=str(tmp_path / "out"), temp_dir=str(tmp_path))
    [rec] = align_clip(Item(os.path.basename(path), str(path)), settings)
    crops = list(VideoReader(rec["output"])) if rec["kept"] else None
    return rec, crops


def test_aligned_clip_has_no_seams_at_detection_batch_boundaries(tmp_path):
    """A 1080x1920 single-shot close-up panning and zooming smoothly over three detection batches:
    the aligned clip changes no more near a batch boundary than elsewhere, and is kept."""
    source = tmp_path / "pan.mp4"
    _with_silence(source, panning_face(200), (1080, 1920), tmp_path)
    rec, crops = _align(source, tmp_path)
    assert rec["kept"], rec
    assert len(crops) == 200
    assert_no_seams(crop_changes(crops))
    scores = rec["scores"]
    assert scores["largest_crop_change"] < 2.5 * scores["p90_crop_change"]


def test_clip_whose_crops_jump_is_dropped(tmp_path):
    """The same kind of clip with a jump inside it (at frame 60 the camera cuts to a 15% closer
    framing, too small a change for a shot detector or the identity check): dropped, and the
    record says where the crops jump."""
    frames = list(panning_face(100, (540, 960)))
    zoom = cv2.getRotationMatrix2D((270, 380), 0, 1.15)
    jumped = frames[:60] + [cv2.warpAffine(f, zoom, (540, 960), borderMode=cv2.BORDER_REFLECT) for f in frames[60:]]
    source = tmp_path / "jump.mp4"
    _with_silence(source, jumped, (540, 960), tmp_path)
    rec, _ = _align(source, tmp_path)
    assert not rec["kept"] and rec["output"] is None
    assert rec["reason"].startswith("aligned crops jump at frame 60 "), rec["reason"]  # measured: 29.1 > 2.5 x 4.4
    assert rec["scores"]["identity_breaks"] == 0
    assert not os.path.exists(tmp_path / "out" / "affine_transformed" / "jump.mp4")


def test_alignment_jump_is_relative_to_the_clips_own_changes():
    calm = np.full(100, 1.0)
    assert alignment_jump(calm) is None
    spiked = calm.copy()
    spiked[40] = 10.0
    assert alignment_jump(spiked) == (40, 10.0, 1.0)
    busy = np.linspace(4.0, 8.0, 100)  # a lot of motion everywhere: 10 is not a jump there
    busy[40] = 10.0
    assert alignment_jump(busy) is None
    small = np.full(100, 0.2)
    small[40] = 1.5  # 7.5x the clip's typical change, but under the floor (codec noise on a still clip)
    assert alignment_jump(small) is None

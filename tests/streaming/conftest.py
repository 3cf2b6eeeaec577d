"""Fixtures of the streaming tests: tiny random-weight models, one loaded pipeline, avatars and speech made here."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.media.audio import load_audio
from tests.tiny_models import tiny_models, tiny_pipeline  # noqa: F401  (tiny_models: a session fixture)
from tools.synthetic_media import speak, write_talking_video, write_wav

SR = 16000


@pytest.fixture(scope="module")
def pipe(tiny_models):  # noqa: F811
    pipeline = tiny_pipeline(tiny_models)
    yield pipeline
    pipeline.face_detector.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """A 1 s avatar (25 frames), a 3 s avatar with frames 30-32 without the face, a face-less video, a photo,
    and 3 s of speech (a wav and its samples as the offline run reads them)."""
    root = tmp_path_factory.mktemp("stream_media")
    speech = speak("Hello there. I am an astronaut, talking to you.", root / "raw.wav")
    speech = np.pad(speech, (0, max(0, 3 * SR - len(speech))))[: 3 * SR]
    write_wav(root / "speech.wav", speech)
    closed = np.zeros(75)
    write_talking_video(root / "avatar.mp4", speech[:SR], size=(128, 128), mouth_envelope=closed, with_audio=False)
    write_talking_video(root / "avatar_3s.mp4", speech, size=(128, 128), blank_frames=(30, 31, 32), with_audio=False)
    write_talking_video(root / "blank.mp4", speech[:SR // 2], size=(96, 96), blank_frames=range(13), with_audio=False)
    write_talking_video(root / "other.mp4", speech[SR:2 * SR], size=(128, 128), seed=7, with_audio=False)
    return {"root": root, "speech": load_audio(root / "speech.wav"), "audio": root / "speech.wav",
            "avatar": root / "avatar.mp4", "avatar_3s": root / "avatar_3s.mp4", "blank": root / "blank.mp4",
            "other": root / "other.mp4"}

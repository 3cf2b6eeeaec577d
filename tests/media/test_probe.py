"""probe_video on files made in the test: errors naming the file, still images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from latentsync.errors import MediaError
from latentsync.media.probe import probe_video
from latentsync.media.reader import VideoReader


@pytest.mark.parametrize("name", ["missing.mp4", "text.mp4", "audio_only.wav"])
def test_probe_video_errors_name_the_file(tmp_path, name):
    path = tmp_path / name
    if name == "text.mp4":
        path.write_text("this is not media\n")
    elif name == "audio_only.wav":
        wavfile.write(path, 16000, np.zeros(1600, np.int16))
    with pytest.raises(MediaError, match=name.replace(".", r"\.")):
        probe_video(path)
    with pytest.raises(MediaError, match=name.replace(".", r"\.")):
        VideoReader(path)


def test_still_image_is_one_frame(tmp_path):
    import cv2

    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 200  # red in RGB
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), image[:, :, ::-1])
    reader = VideoReader(path)
    frames = list(reader)
    assert len(reader) == 1 and len(frames) == 1
    np.testing.assert_array_equal(frames[0], image)
    assert probe_video(path).is_image

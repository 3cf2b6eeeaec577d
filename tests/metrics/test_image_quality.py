"""hyperIQA protocol: first/middle/last frame, centre crop 224 without resizing, ImageNet normalisation, mean."""

import numpy as np
import pytest
import torch

from latentsync.metrics import image_quality
from latentsync.metrics.image_quality import center_crop_normalise, probe_frames, video_quality
from latentsync.media.writer import VideoWriter
from tests.metrics.eval_fixtures import coded_indices, write_index_coded_video


def _numbered_video(path, count=9, size=(240, 300)):
    with VideoWriter(path, 25, size[1], size[0]) as writer:
        for k in range(count):
            writer.write(np.full((*size, 3), 20 * k, np.uint8))
    return path


def test_first_middle_last_frames(tmp_path):
    frames = probe_frames(str(_numbered_video(tmp_path / "v.mp4")))
    assert frames.shape == (3, 240, 300, 3)
    assert [int(round(f.mean() / 20)) for f in frames] == [0, 4, 8]


def test_first_middle_last_of_a_30_fps_video_are_its_own_frames(tmp_path):
    # Upstream indexes decoded frames (decord): 0, len // 2, -1, whatever the frame rate.
    frames = probe_frames(str(write_index_coded_video(tmp_path / "v.mp4", 45, fps=30)))
    assert coded_indices(frames) == [0, 22, 44]


def test_centre_crop_is_not_resized_and_is_normalised():
    frame = np.zeros((1, 240, 300, 3), np.uint8)
    frame[0, 8:232, 38:262] = 255  # exactly the centre 224 x 224 window
    x = center_crop_normalise(frame)
    assert x.shape == (1, 3, 224, 224)
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 0, 0], white)  # no black border pixel: cropped, not resized
    torch.testing.assert_close(x[0, :, -1, -1], white)


def test_video_score_is_the_mean_of_three_frame_scores(tmp_path, monkeypatch):
    seen = []

    def fake_scores(model, images):
        seen.append(images.shape)
        return torch.tensor([10.0, 40.0, 70.0])

    monkeypatch.setattr(image_quality, "quality_scores", fake_scores)
    model = torch.nn.Linear(1, 1)
    assert video_quality(model, str(_numbered_video(tmp_path / "v.mp4"))) == pytest.approx(40.0)
    assert seen == [(3, 3, 224, 224)]

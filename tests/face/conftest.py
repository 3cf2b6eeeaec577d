"""Shared by the face tests: one MediaPipe detector per module and the astronaut photo (skimage)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from latentsync.face.mediapipe_detector import MediapipeFaceDetector


@pytest.fixture(scope="module")
def detector():
    with MediapipeFaceDetector() as det:
        yield det


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()

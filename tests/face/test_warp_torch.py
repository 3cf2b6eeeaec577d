"""The batched tensor warp and restore (for GPUs; run on the CPU here) against OpenCV's and the golden pixels."""

from __future__ import annotations

import numpy as np
import torch

from latentsync.face.warp import AlignRestore
from latentsync.face.warp_torch import restore_batch, warp_batch
from tests.face.test_warp import SCENES, _scene, assert_image_close, assert_pixels_close, face_tensor
from tests.face.test_warp import golden  # noqa: F401  (fixture)


@SCENES
def test_batched_tensor_warps_match_opencv(golden, shift, angle):
    """The grid_sample path (for GPUs; run on the CPU here) gives OpenCV's pixels within the golden tolerance."""
    restorer, frame, matrix, face = _scene(golden, shift, angle)
    other = np.ascontiguousarray(frame[::-1])  # a second, different frame in the batch
    frames = torch.from_numpy(np.stack([frame, other]))
    matrices = torch.from_numpy(np.stack([matrix, matrix]))
    crops = warp_batch(frames, matrices, restorer.face_size).numpy()
    assert crops.shape == (2, 280, 210, 3) and crops.dtype == np.uint8
    assert_pixels_close(crops[0], restorer.warp(frame, matrix))
    assert_pixels_close(crops[1], restorer.warp(other, matrix))

    restored = restore_batch(frames, torch.stack([face, -face]), matrices).numpy()
    assert_pixels_close(restored[0], restorer.restore_img(frame, face, matrix))
    assert_pixels_close(restored[1], restorer.restore_img(other, -face, matrix))


def test_batched_tensor_warps_match_golden(golden):
    image, landmarks = golden["inputs"]["image"].numpy(), golden["inputs"]["landmarks"].numpy()
    out = golden["outputs"]
    restorer = AlignRestore(resolution=256)
    matrix = restorer.estimate_matrix(landmarks, smooth=False)
    face = warp_batch(torch.from_numpy(image)[None], torch.from_numpy(matrix)[None], restorer.face_size)[0].numpy()
    assert_image_close(face, out["face_256"])
    restored = restore_batch(torch.from_numpy(image)[None], face_tensor(face, True)[None], torch.from_numpy(matrix)[None])
    assert_image_close(restored[0].numpy(), out["restored_modified_face_256"])

"""AlignRestore against the upstream golden vectors (tests/fixtures/golden/affine.pt).

Tolerances from the golden README: uint8 images max |diff| <= 1 and mean |diff| <= 0.05 (truncation vs
rounding would show up as ~0.5 mean); matrices atol 5e-4; smoothing state atol 1e-5.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from latentsync.face.warp import AlignRestore, _feather_mask, _paste_box, similarity_from_points
from tests.conftest import load_golden

IMAGE_MAX, IMAGE_MEAN, MATRIX_ATOL, BIAS_ATOL = 1, 0.05, 5e-4, 1e-5


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden("affine.pt")


def assert_image_close(actual: np.ndarray, expected: torch.Tensor) -> None:
    expected = expected.numpy()
    assert actual.dtype == np.uint8 and actual.shape == expected.shape
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= IMAGE_MAX, diff.max()
    assert diff.mean() <= IMAGE_MEAN, diff.mean()


def assert_matrix_close(actual: np.ndarray, expected: torch.Tensor) -> None:
    assert actual.dtype == np.float32 and actual.shape == (2, 3)
    np.testing.assert_allclose(actual, expected.numpy(), atol=MATRIX_ATOL, rtol=1e-5)


def face_tensor(face: np.ndarray, invert_lower_half: bool) -> torch.Tensor:
    """The restore input the golden file used: (3, H, W) in [-1, 1], lower half optionally negated."""
    tensor = torch.from_numpy(face).permute(2, 0, 1).float() / 127.5 - 1
    if invert_lower_half:
        tensor[:, tensor.shape[1] // 2 :] *= -1
    return tensor


def test_crop_and_restore_256(golden):
    image, landmarks = golden["inputs"]["image"].numpy(), golden["inputs"]["landmarks"].numpy()
    out = golden["outputs"]
    restorer = AlignRestore(resolution=256)
    assert restorer.face_size == (210, 280)

    face, matrix = restorer.align_warp_face(image, landmarks, smooth=False)
    assert restorer.p_bias is None  # smooth=False leaves the state alone
    assert_matrix_close(matrix, out["matrix_256"])
    assert_image_close(face, out["face_256"])
    assert_image_close(cv2.resize(face, (256, 256), interpolation=cv2.INTER_LANCZOS4), out["face_256_lanczos_256x256"])
    np.testing.assert_allclose(cv2.invertAffineTransform(matrix), out["inverse_matrix_256"].numpy(), atol=MATRIX_ATOL)

    assert_image_close(restorer.restore_img(image, face_tensor(face, False), matrix), out["restored_same_face_256"])
    # numpy input and a (1, 2, 3) torch matrix are accepted too.
    restored = restorer.restore_img(
        image, face_tensor(face, True).numpy(), torch.from_numpy(matrix)[None]
    )
    assert_image_close(restored, out["restored_modified_face_256"])


def test_restore_internals_256(golden):
    image, landmarks = golden["inputs"]["image"].numpy(), golden["inputs"]["landmarks"].numpy()
    internals = golden["outputs"]["restore_internals_256"]
    restorer = AlignRestore(resolution=256)
    _, matrix = restorer.align_warp_face(image, landmarks, smooth=False)
    coverage = cv2.warpAffine(
        np.ones((280, 210), np.float32), cv2.invertAffineTransform(matrix), (192, 192), flags=cv2.INTER_LINEAR
    )
    hard, soft, edge = _feather_mask(coverage)
    assert hard.sum() == pytest.approx(internals["total_face_area"], abs=0.5)
    assert edge == internals["w_edge"] == 5
    assert soft.max() <= 1.0 + 1e-6 and soft.min() >= 0.0


def test_edge_case_crop_past_border(golden):
    image = golden["inputs"]["image"].numpy()[51:, 59:]
    out = golden["outputs"]
    restorer = AlignRestore(resolution=256)
    face, matrix = restorer.align_warp_face(image, golden["inputs"]["edge_landmarks"].numpy(), smooth=False)
    assert_matrix_close(matrix, out["edge_matrix_256"])
    assert_image_close(face, out["edge_face_256"])
    assert (face[0, 0] == 127).all()  # constant fill outside the frame
    restored = restorer.restore_img(image, face_tensor(face, True), matrix)
    assert_image_close(restored, out["edge_restored_modified_face_256"])


def test_resolution_512(golden):
    image, landmarks = golden["inputs"]["image"].numpy(), golden["inputs"]["landmarks"].numpy()
    out = golden["outputs"]
    restorer = AlignRestore(resolution=512)
    face, matrix = restorer.align_warp_face(image, landmarks, smooth=False)
    assert list(face.shape) == out["face_512_shape"]
    assert_matrix_close(matrix, out["matrix_512"])
    assert_image_close(face[::2, ::2], out["face_512_stride2"])
    # Sums are a summary of the reference: a few ±1 pixels are expected.
    sums = face.reshape(-1, 3).sum(0, dtype=np.int64)
    assert np.abs(sums - out["face_512_sum_per_channel"].numpy()).max() <= 100
    restored = restorer.restore_img(image, face_tensor(face, True), matrix)
    assert_image_close(restored, out["restored_modified_face_512"])


def test_smoothing_sequence(golden):
    image = golden["inputs"]["image"].numpy()
    out = golden["outputs"]
    restorer = AlignRestore(resolution=256)
    for k in range(5):
        landmarks = out["smooth_landmarks"][k].numpy()
        face, matrix = restorer.align_warp_face(image, landmarks, smooth=True)
        assert_matrix_close(matrix, out["smooth_matrices"][k])
        np.testing.assert_allclose(restorer.p_bias, out["smooth_p_bias"][k].numpy(), atol=BIAS_ATOL)
        plain, _ = similarity_from_points(landmarks, restorer.face_template)
        assert_matrix_close(plain, out["smooth_matrices_without_smoothing"][k])
        sums = face.reshape(-1, 3).sum(0, dtype=np.int64)
        assert np.abs(sums - out["smooth_face_sum_per_channel"][k].numpy()).max() <= 100

    # smooth=False neither reads nor writes the state.
    state = restorer.p_bias.copy()
    _, matrix = restorer.align_warp_face(image, golden["inputs"]["landmarks"].numpy(), smooth=False)
    assert_matrix_close(matrix, out["matrix_256"])
    np.testing.assert_array_equal(restorer.p_bias, state)

    restorer.reset()
    assert restorer.p_bias is None
    _, matrix = restorer.align_warp_face(image, out["smooth_landmarks"][0].numpy(), smooth=True)
    assert_matrix_close(matrix, out["smooth_matrices"][0])


def test_rejects_bad_inputs():
    restorer = AlignRestore(resolution=256)
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="float32"):
        AlignRestore(resolution=256, dtype=torch.float16)
    with pytest.raises(ValueError, match="degenerate"):
        restorer.align_warp_face(image, np.zeros((3, 2)), smooth=False)
    with pytest.raises(ValueError, match="crop size"):
        restorer.restore_img(image, torch.zeros(3, 256, 256), np.eye(2, 3, dtype=np.float32))


SCENES = pytest.mark.parametrize(
    "shift, angle",
    [((0.0, 0.0), 0.0), ((300.0, 200.0), 0.3), ((-60.0, -50.0), -0.2), ((430.0, 330.0), 0.1), ((900.0, 700.0), 0.0)],
    ids=["centre", "rotated", "past-top-left", "past-bottom-right", "outside"],
)


def _scene(golden, shift, angle) -> tuple[AlignRestore, np.ndarray, np.ndarray, torch.Tensor]:
    """A 640x480 noise frame, the golden face's matrix moved by ``shift`` and turned by ``angle``, a random face."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    landmarks = golden["inputs"]["landmarks"].numpy().astype(np.float64)
    centre = landmarks.mean(0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (landmarks - centre) @ turn.T + centre + np.array(shift) + np.array([60.0, 40.0])
    restorer = AlignRestore(resolution=256)
    matrix = restorer.estimate_matrix(landmarks, smooth=False)
    face = torch.from_numpy(rng.uniform(-1, 1, (3, 280, 210)).astype(np.float32))
    return restorer, frame, matrix, face


def assert_pixels_close(actual: np.ndarray, expected: np.ndarray) -> None:
    diff = np.abs(actual.astype(np.int16) - expected)
    assert diff.max() <= IMAGE_MAX and diff.mean() <= IMAGE_MEAN, (diff.max(), diff.mean())


@SCENES
def test_face_box_paths_equal_whole_frame(golden, shift, angle):
    """Warp and restore on the face's box give the whole-frame reference's pixels (restore: exactly)."""
    restorer, frame, matrix, face = _scene(golden, shift, angle)
    box = restorer.warp(frame, matrix)
    assert_pixels_close(box, restorer.warp(frame, matrix, full_frame=True))

    restored = restorer.restore_img(frame, face, matrix)
    np.testing.assert_array_equal(restored, restorer.restore_img(frame, face, matrix, full_frame=True))
    changed = np.argwhere((restored != frame).any(-1))
    if shift[0] > 640:  # wholly outside the frame: nothing to paste
        assert len(changed) == 0 and (box == 127).all()
        return
    assert len(changed) > 1000  # the face was pasted...
    x0, y0, x1, y1 = _paste_box(cv2.invertAffineTransform(matrix), restorer.face_size, frame.shape)
    assert (x1 - x0) * (y1 - y0) < 0.6 * frame.shape[0] * frame.shape[1]  # ...on a box, not the whole frame
    assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1

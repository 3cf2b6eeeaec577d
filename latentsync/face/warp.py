"""Face alignment: warp a frame so three landmarks land on a fixed template, and paste the result back.

The crop is a similarity transform (rotation, uniform scale, translation) of the frame. The
numerics follow LatentSync's ``AlignRestore`` in float32 (the golden vectors in
``tests/fixtures/golden/affine.pt``), computed with OpenCV on the CPU (the same as batched tensor
operations on a device: :mod:`latentsync.face.warp_torch`):

* warps are bilinear with a constant border of 127, and float results are *truncated* to uint8;
* pasting back feathers the edge of the warped crop with an eroded, Gaussian-blurred mask;
* ``smooth=True`` adds an exponentially smoothed nose offset to the translation, which steadies
  the crop across video frames.

Upstream's default precision on CUDA is float16, which moves crops by up to 15 grey levels; this
module always computes in float32.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

__all__ = ["BORDER_FILL", "AlignRestore", "similarity_from_points"]

# Template for resolution 256 before scaling by ``_template_scale``: image-left eyebrow centre,
# image-right eyebrow centre, nose centre, in (x, y) pixels.
_TEMPLATE_POINTS = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])
# Crop size (width, height) at resolution 256 before scaling.
_CROP_WH = (75, 100)
BORDER_FILL = 127.0  # grey of pixels a warp reads from outside its source
# Weight of the previous frame's nose offset when smoothing.
_SMOOTH_PREVIOUS = 0.2
_NOSE = 2


def _template_scale(resolution: int) -> float:
    return resolution / 256 * 2.8


def similarity_from_points(
    landmarks: np.ndarray, template: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity mapping ``landmarks`` (N, 2) onto ``template`` (N, 2), in float32.

    Returns the (2, 3) matrix and the nose offset (template minus landmarks in normalised units,
    used for smoothing). Both point sets are centred and divided by their unbiased standard
    deviation over all coordinates before the SVD, as upstream does.
    """
    src = np.asarray(landmarks, dtype=np.float32)
    dst = np.asarray(template, dtype=np.float32)
    src_mean = src.mean(axis=0, dtype=np.float32)
    dst_mean = dst.mean(axis=0, dtype=np.float32)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_std = np.float32(src_c.std(ddof=1, dtype=np.float32))
    dst_std = np.float32(dst_c.std(ddof=1, dtype=np.float32))
    if not src_std > 0:
        raise ValueError(f"landmarks are degenerate (all equal): {src.tolist()}")
    src_n = src_c / src_std
    dst_n = dst_c / dst_std

    # cov = U diag(S) Vt; the rotation taking src onto dst is V Uᵀ (no reflection allowed).
    u, _, vt = np.linalg.svd(src_n.T @ dst_n)
    v = vt.T
    rotation = v @ u.T
    if np.linalg.det(rotation) < 0:
        v[:, -1] *= -1
        rotation = v @ u.T

    scale = dst_std / src_std
    matrix = np.empty((2, 3), dtype=np.float32)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    nose_offset = (dst_n[_NOSE] - src_n[_NOSE]).astype(np.float32)
    return matrix, nose_offset


def _as_matrix(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape not in ((2, 3), (1, 2, 3)):
        raise ValueError(f"affine matrix must have shape (2, 3) or (1, 2, 3), got {matrix.shape}")
    return matrix.reshape(2, 3)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}")
    return image


def _to_uint8(values: np.ndarray) -> np.ndarray:
    # Truncation, not rounding: upstream converts float tensors with ``.to(uint8)``/``astype``.
    return np.clip(values, 0, 255).astype(np.uint8)


def _feather_mask(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Hard and soft paste masks from the warped crop coverage (H, W) float32.

    The hard mask trims one pixel off the coverage; the soft one erodes it further by twice the
    edge width, w_edge = int(sqrt(area)) // 20, and blurs it with a (2 w_edge + 1)² Gaussian.
    Returns (hard, soft, w_edge).
    """
    # Minimum over the pixel and its up, left and up-left neighbours (outside pixels ignored).
    hard = cv2.erode(coverage, np.ones((2, 2), np.uint8), anchor=(1, 1))
    area = float(hard.sum(dtype=np.float32))
    edge = int(math.sqrt(area)) // 20
    if edge == 0:
        return hard, hard, edge
    soft = cv2.erode(hard, np.ones((2 * edge, 2 * edge), np.uint8))
    size = 2 * edge + 1
    # OpenCV's automatic sigma for this kernel size, passed explicitly.
    sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8
    soft = cv2.GaussianBlur(soft, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)
    return hard, soft, edge


class AlignRestore:
    """Crops aligned faces from frames and pastes edited crops back.

    One instance per video: it carries the smoothing state of the crop position. The crop is
    ``face_size`` = (w, h) = (210, 280) at resolution 256 and (420, 560) at 512; callers resize it
    to the model resolution themselves.
    """

    def __init__(
        self,
        resolution: int = 256,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if dtype != torch.float32:
            raise ValueError(
                f"AlignRestore computes in float32 only (got {dtype}); upstream's float16 path shifts "
                "crops by up to 15 grey levels"
            )
        self.resolution = resolution
        # OpenCV does the work on the CPU; ``device`` is where tensors from restore_img's caller
        # live, which only matters for moving them off it.
        self.device = torch.device(device)
        ratio = _template_scale(resolution)
        self.face_template = (_TEMPLATE_POINTS * ratio).astype(np.float32)
        self.face_size = (int(_CROP_WH[0] * ratio), int(_CROP_WH[1] * ratio))
        self.p_bias: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the smoothing state (start of a new video)."""
        self.p_bias = None

    def estimate_matrix(self, landmarks: np.ndarray, smooth: bool = True) -> np.ndarray:
        """(2, 3) float32 matrix from frame pixels to crop pixels; updates the smoothing state if ``smooth``."""
        matrix, bias = similarity_from_points(np.asarray(landmarks, dtype=np.float32), self.face_template)
        if smooth:
            if self.p_bias is not None:
                bias = (_SMOOTH_PREVIOUS * self.p_bias + (1 - _SMOOTH_PREVIOUS) * bias).astype(np.float32)
            self.p_bias = bias
            matrix[:, 2] += bias
        return matrix

    def align_warp_face(
        self, image: np.ndarray, landmarks: np.ndarray, smooth: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Warp ``image`` (H, W, 3) uint8 so ``landmarks`` (3, 2) (left brow, right brow, nose, in (x, y)
        pixels) match the template. Returns the crop (h, w, 3) uint8 and the (2, 3) float32 matrix."""
        image = _check_image(image)
        landmarks = np.asarray(landmarks, dtype=np.float32)
        if landmarks.shape != (3, 2):
            raise ValueError(f"expected (3, 2) landmarks, got shape {landmarks.shape}")
        matrix = self.estimate_matrix(landmarks, smooth=smooth)
        return self.warp(image, matrix), matrix

    def warp(self, image: np.ndarray, matrix: np.ndarray | torch.Tensor, full_frame: bool = False) -> np.ndarray:
        """The ``face_size`` crop (h, w, 3) uint8 of ``image`` (H, W, 3) uint8 through a (2, 3) frame-to-crop matrix.

        Only the frame pixels the crop samples are converted to float (``full_frame=True``: all of
        them, the reference path); the crop is the same either way.
        """
        image = _check_image(image)
        matrix = _as_matrix(matrix)
        x0, y0, x1, y1 = (0, 0, image.shape[1], image.shape[0]) if full_frame else _source_box(matrix, self.face_size, image.shape)
        if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the frame
            return np.full((self.face_size[1], self.face_size[0], 3), int(BORDER_FILL), np.uint8)
        face = cv2.warpAffine(
            image[y0:y1, x0:x1].astype(np.float32),
            _shift_source(matrix, x0, y0),
            self.face_size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(BORDER_FILL, BORDER_FILL, BORDER_FILL),
        )
        return _to_uint8(face)

    def restore_img(
        self,
        image: np.ndarray,
        face: torch.Tensor | np.ndarray,
        matrix: torch.Tensor | np.ndarray,
        full_frame: bool = False,
    ) -> np.ndarray:
        """Paste ``face`` (3, h, w) in [-1, 1] back into ``image`` (H, W, 3) uint8 through the inverse of
        ``matrix``, feathering the crop's border. Returns a new (H, W, 3) uint8 frame.

        Only the box the pasted crop and its feathering cover is computed (``full_frame=True``: the
        whole frame, the reference path); pixels outside it are copied, as the blend leaves them.
        """
        image = _check_image(image)
        height, width = image.shape[:2]
        if isinstance(face, torch.Tensor):
            face = face.detach().to(device="cpu", dtype=torch.float32).numpy()
        face = np.asarray(face, dtype=np.float32)
        crop_w, crop_h = self.face_size
        if face.shape != (3, crop_h, crop_w):
            raise ValueError(
                f"expected a (3, {crop_h}, {crop_w}) face (resize the model output back to the crop size), "
                f"got shape {face.shape}"
            )
        inverse = cv2.invertAffineTransform(_as_matrix(matrix)).astype(np.float32)
        x0, y0, x1, y1 = (0, 0, width, height) if full_frame else _paste_box(inverse, self.face_size, image.shape)
        restored = image.copy()
        if x1 > x0 and y1 > y0:
            restored[y0:y1, x0:x1] = self._blend(image[y0:y1, x0:x1], face, _shift_target(inverse, x0, y0))
        return restored

    def _blend(self, image: np.ndarray, face: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        """``face`` (3, h, w) warped by the crop-to-``image`` matrix ``inverse`` and feathered into ``image``."""
        height, width = image.shape[:2]
        # Upstream fills with 127 in [-1, 1] units; those pixels are masked out below anyway.
        warped = cv2.warpAffine(
            np.ascontiguousarray(face.transpose(1, 2, 0)),
            inverse,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(BORDER_FILL, BORDER_FILL, BORDER_FILL),
        )
        # In place, in the reference's order of float32 operations:
        # soft * (clip(warped / 2 + 0.5, 0, 1) * 255 * hard) + (1 - soft) * image.
        warped *= 0.5
        warped += 0.5
        np.clip(warped, 0, 1, out=warped)
        warped *= 255

        coverage = cv2.warpAffine(
            np.ones(face.shape[1:], dtype=np.float32),
            inverse,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        hard, soft, _ = _feather_mask(coverage)
        warped *= hard[..., None]
        warped *= soft[..., None]
        background = image.astype(np.float32)
        background *= (1 - soft)[..., None]
        warped += background
        return _to_uint8(warped)


# ---------------------------------------------------------------------------------------- face boxes
# A warp reads and writes only near the face, so both directions work on a box of the frame: the
# crop's corners mapped into the frame, widened by the bilinear footprint and (for pasting) the
# feathering, and clipped to the frame. The matrices are shifted to the box's origin.


def _corners_box(points: np.ndarray, margin: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the frame pixels within ``margin`` of ``points`` (N, 2), clipped to ``shape``."""
    height, width = shape[:2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + margin + 1
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def _crop_corners(crop_size: tuple[int, int]) -> np.ndarray:
    # Half a pixel past the outer pixel centres: bilinear weights reach up to one pixel beyond them.
    w, h = crop_size
    return np.array([[-1, -1], [w, -1], [-1, h], [w, h]], dtype=np.float64)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T.astype(np.float64) + matrix[:, 2].astype(np.float64)


def _source_box(matrix: np.ndarray, crop_size: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Frame pixels the crop of a frame-to-crop ``matrix`` samples (with a 2-pixel safety margin)."""
    inverse = cv2.invertAffineTransform(matrix)
    return _corners_box(_apply(inverse, _crop_corners(crop_size)), 2, shape)


def _paste_box(inverse: np.ndarray, crop_size: tuple[int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Frame pixels a restore through the crop-to-frame ``inverse`` can change, plus room for the feathering.

    The feather's blur reaches w_edge <= sqrt(pasted area) / 20 pixels and reflects at the box's
    edges, so the margin keeps twice that (and a little) of zeros around the pasted region.
    """
    area = abs(float(np.linalg.det(inverse[:, :2].astype(np.float64)))) * (crop_size[0] + 2) * (crop_size[1] + 2)
    margin = 2 * (int(math.sqrt(area)) // 20) + 4
    return _corners_box(_apply(inverse, _crop_corners(crop_size)), margin, shape)


def _shift_source(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The frame-to-crop ``matrix`` for a box of the frame whose top-left pixel is (x0, y0)."""
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float32)
    return shifted


def _shift_target(inverse: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The crop-to-frame ``inverse`` for a box of the frame whose top-left pixel is (x0, y0)."""
    shifted = inverse.copy()
    shifted[:, 2] -= np.array([x0, y0], dtype=np.float32)
    return shifted

"""The warp and restore of :class:`~latentsync.face.warp.AlignRestore` as batched tensor operations, for a GPU.

Bilinear sampling at pixel centres (``grid_sample``, align_corners=True), a constant border,
float32 throughout, results truncated to uint8. OpenCV rounds sampling positions to 1/32 pixel,
these do not (upstream's kornia warp does not either), so the two paths differ by at most a grey
level here and there.
"""

from __future__ import annotations

import math

import cv2
import torch
import torch.nn.functional as F

from latentsync.face.warp import BORDER_FILL

__all__ = ["restore_batch", "warp_batch"]


def _pixel_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height * width, 3) homogeneous (x, y, 1) pixel coordinates, row-major, float64."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs).flatten()], dim=1)


def _sample(images: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int], fill: float) -> torch.Tensor:
    """Bilinear samples (B, C, h, w) of ``images`` (B, C, H, W) float32 at ``matrices`` (B, 2, 3) applied to
    the output's (x, y) pixel coordinates; positions outside the images read ``fill``."""
    width, height = size
    in_h, in_w = images.shape[-2:]
    points = _pixel_grid(height, width, images.device) @ matrices.to(torch.float64).transpose(1, 2)  # (B, h*w, 2)
    scale = torch.tensor([2 / max(in_w - 1, 1), 2 / max(in_h - 1, 1)], dtype=torch.float64, device=images.device)
    grid = (points * scale - 1).to(torch.float32).view(-1, height, width, 2)
    sampled = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled + fill


def _invert(matrices: torch.Tensor) -> torch.Tensor:
    """Inverses of (B, 2, 3) affine matrices, in float64."""
    square = torch.zeros(matrices.shape[0], 3, 3, dtype=torch.float64, device=matrices.device)
    square[:, :2] = matrices.to(torch.float64)
    square[:, 2, 2] = 1
    return torch.linalg.inv(square)[:, :2]


def warp_batch(frames: torch.Tensor, matrices: torch.Tensor, crop_size: tuple[int, int]) -> torch.Tensor:
    """Crops (B, h, w, 3) uint8 of ``frames`` (B, H, W, 3) uint8 through frame-to-crop ``matrices`` (B, 2, 3),
    on the frames' device; ``crop_size`` = (w, h). Matches :meth:`AlignRestore.warp`."""
    images = frames.permute(0, 3, 1, 2).to(torch.float32)
    crops = _sample(images, _invert(matrices), crop_size, BORDER_FILL)
    return crops.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _erode(mask: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Minimum over a (before + after + 1)² window from ``before`` pixels up/left to ``after`` down/right of
    each pixel of ``mask`` (N, 1, H, W); pixels outside are ignored (OpenCV's erode border)."""
    size = before + after + 1
    rows = F.max_pool2d(F.pad(-mask, (before, after, 0, 0), value=-math.inf), (1, size), stride=1)
    return -F.max_pool2d(F.pad(rows, (0, 0, before, after), value=-math.inf), (size, 1), stride=1)


def _gaussian_blur(mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """OpenCV's separable GaussianBlur of ``mask`` (1, 1, H, W) with BORDER_REFLECT_101."""
    kernel = torch.from_numpy(cv2.getGaussianKernel(size, sigma, cv2.CV_32F)).to(mask.device).flatten()
    half = size // 2
    rows = F.conv2d(F.pad(mask, (half, half, 0, 0), mode="reflect"), kernel.view(1, 1, 1, size))
    return F.conv2d(F.pad(rows, (0, 0, half, half), mode="reflect"), kernel.view(1, 1, size, 1))


def restore_batch(frames: torch.Tensor, faces: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Paste ``faces`` (B, 3, h, w) in [-1, 1] into ``frames`` (B, H, W, 3) uint8 through the inverses of the
    frame-to-crop ``matrices`` (B, 2, 3), feathered, on the frames' device. Matches :meth:`AlignRestore.restore_img`."""
    height, width = frames.shape[1:3]
    crop_h, crop_w = faces.shape[-2:]
    faces = faces.to(device=frames.device, dtype=torch.float32)
    # Sampling the crop at M·p for every frame pixel p is the warp by the inverse of M.
    matrices = _invert(_invert(matrices))
    warped = _sample(faces, matrices, (width, height), BORDER_FILL)
    warped = (warped / 2 + 0.5).clamp_(0, 1) * 255
    ones = torch.ones(len(faces), 1, crop_h, crop_w, device=frames.device)
    coverage = _sample(ones, matrices, (width, height), 0.0)
    hard = _erode(coverage, 1, 0)
    soft = torch.empty_like(hard)
    for i in range(len(hard)):  # the feather's width depends on each face's area
        edge = int(math.sqrt(float(hard[i].sum(dtype=torch.float32)))) // 20
        if edge == 0:
            soft[i] = hard[i]
            continue
        size = 2 * edge + 1
        sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8
        soft[i] = _gaussian_blur(_erode(hard[i : i + 1], edge, edge - 1), size, sigma)[0]
    images = frames.permute(0, 3, 1, 2).to(torch.float32)
    blended = soft * (warped * hard) + (1 - soft) * images
    return blended.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

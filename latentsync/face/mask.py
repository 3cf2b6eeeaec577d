"""The fixed mouth mask and the pixel-space inputs of the UNet (face frames, masked frames, masks).

Mask convention: 1 keeps the pixel, 0 marks the mouth region the model generates (the opposite
of Stable Diffusion inpainting). The mask is ``mask.png`` beside this module, 256x256, black
(0) over the mouth and lower face.

Upstream returns the mask and masked frames in float64; here everything is float32. The
values are equal at resolution 256 (the mask is exactly 0/1 there); at 512 the Lanczos
upscale gives fractional mask values and the products agree to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from latentsync.errors import MediaError
from latentsync.paths import DEFAULT_MASK_PATH

__all__ = [
    "load_fixed_mask",
    "prepare_masks_and_masked_images",
    "process_images",
    "resize_frames",
]


def load_fixed_mask(resolution: int, path: str | Path = DEFAULT_MASK_PATH) -> torch.Tensor:
    """The keep-mask as a (1, r, r) float32 tensor in [0, 1], Lanczos-resized from ``path``.

    Upstream returns (3, r, r) float64 with three identical channels; one channel broadcasts the same.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"cannot read mask image {path}; pass the path of a PNG such as {DEFAULT_MASK_PATH}")
    # All channels are identical, so the BGR order does not matter; keep the first.
    if (resolution, resolution) != image.shape[:2]:
        image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return torch.from_numpy(image[..., 0] / 255.0).to(torch.float32)[None]


def _to_channels_first(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (f, h, w, 3) or (f, 3, h, w) frames as a (f, 3, h, w) tensor."""
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise ValueError(f"expected frames of shape (f, h, w, 3) or (f, 3, h, w), got {tuple(images.shape)}")
    if images.shape[3] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(images.shape)}")
    return images


def resize_frames(images: torch.Tensor | np.ndarray, resolution: int) -> torch.Tensor:
    """Frames as (f, 3, r, r), resized with antialiased bicubic (torchvision) if not already r x r.

    On uint8 input torchvision rounds the result back to uint8, as upstream does.
    """
    images = _to_channels_first(images)
    if images.shape[-2:] == (resolution, resolution):
        return images
    return TF.resize(images, [resolution, resolution], interpolation=InterpolationMode.BICUBIC, antialias=True)


def process_images(images: torch.Tensor | np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 frames (f, h, w, 3) or (f, 3, h, w) to (f, 3, r, r) float32 in [-1, 1] (reference frames)."""
    images = resize_frames(images, resolution)
    return (images / 255.0 - 0.5) / 0.5


def prepare_masks_and_masked_images(
    images: torch.Tensor | np.ndarray, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """UNet pixel inputs for uint8 face frames; the resolution is the mask's.

    Returns ``pixel_values`` (f, 3, r, r) in [-1, 1], ``masked_pixel_values`` (same, mouth zeroed)
    and ``masks`` (f, 1, r, r) with 1 = keep, all float32 on the frames' device.
    """
    if mask.ndim != 3 or mask.shape[-1] != mask.shape[-2]:
        raise ValueError(f"expected a (c, r, r) mask, got shape {tuple(mask.shape)}")
    pixel_values = process_images(images, mask.shape[-1])
    mask = mask[:1].to(device=pixel_values.device, dtype=pixel_values.dtype)
    masked = pixel_values * mask
    masks = mask.expand(pixel_values.shape[0], -1, -1, -1).clone()
    return pixel_values, masked, masks

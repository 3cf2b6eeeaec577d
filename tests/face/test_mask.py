"""Fixed mask and UNet pixel inputs against tests/fixtures/golden/mask.pt (atol 1e-6, masks exact)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from latentsync.errors import MediaError
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images, process_images, resize_frames
from latentsync.paths import DEFAULT_MASK_PATH
from tests.conftest import GOLDEN_DIR, load_golden

ATOL = 1e-6


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden("mask.pt")


def test_shipped_mask_is_the_reference_png(golden):
    shipped = hashlib.sha256(DEFAULT_MASK_PATH.read_bytes()).hexdigest()
    assert shipped == golden["config"]["mask_png_sha256"]
    assert shipped == hashlib.sha256((GOLDEN_DIR / "mask.png").read_bytes()).hexdigest()


@pytest.mark.parametrize("resolution", [256, 512])
def test_load_fixed_mask(golden, resolution):
    mask = load_fixed_mask(resolution)
    assert mask.shape == (1, resolution, resolution) and mask.dtype == torch.float32
    expected = golden["outputs"][f"fixed_mask_{resolution}_uint8"]
    # The stored numerators are exact: mask * 255 must round-trip to them.
    torch.testing.assert_close((mask * 255).round().to(torch.uint8), expected, atol=0, rtol=0)
    torch.testing.assert_close(mask, expected / 255.0, atol=ATOL, rtol=0)


def test_mask_semantics():
    mask = load_fixed_mask(256)[0]
    generated = mask == 0
    assert int(generated.sum()) == 26673  # mouth and lower face
    rows, cols = torch.nonzero(generated, as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (95, 242, 9, 247)
    assert mask[40, 128] == 1  # forehead is kept


def test_missing_mask_file(tmp_path):
    with pytest.raises(MediaError, match="missing.png"):
        load_fixed_mask(256, tmp_path / "missing.png")


def test_prepare_masks_and_masked_images(golden):
    images = golden["inputs"]["images"]  # (1, 280, 210, 3) uint8 crop
    out = golden["outputs"]
    mask = load_fixed_mask(256, GOLDEN_DIR / "mask.png")
    pixel_values, masked, masks = prepare_masks_and_masked_images(images, mask)
    assert pixel_values.shape == masked.shape == (1, 3, 256, 256)
    assert masks.shape == (1, 1, 256, 256)
    assert pixel_values.dtype == masked.dtype == masks.dtype == torch.float32
    torch.testing.assert_close(pixel_values, out["pixel_values"], atol=ATOL, rtol=0)
    torch.testing.assert_close(masked, out["masked_pixel_values_as_float32"], atol=ATOL, rtol=0)
    torch.testing.assert_close((masks * 255).to(torch.uint8), out["masks_uint8"], atol=0, rtol=0)

    resized = resize_frames(images, 256)
    assert resized.dtype == torch.uint8
    torch.testing.assert_close(resized[0].sum((1, 2)), out["resized_uint8_sum_per_channel"], atol=0, rtol=0)

    # Reference frames take the same path without the mask; numpy and channels-first input work too.
    torch.testing.assert_close(process_images(images.numpy(), 256), pixel_values, atol=0, rtol=0)
    torch.testing.assert_close(process_images(images.permute(0, 3, 1, 2), 256), pixel_values, atol=0, rtol=0)


def test_same_size_frames_are_not_resampled():
    frames = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8)
    resized = resize_frames(frames, 256)
    assert torch.equal(resized, frames.permute(0, 3, 1, 2))
    pixel_values, masked, masks = prepare_masks_and_masked_images(frames, load_fixed_mask(256))
    expected = frames.permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(pixel_values, expected, atol=ATOL, rtol=0)
    assert masks.shape == (2, 1, 256, 256)
    assert torch.equal(masked[masks.expand_as(masked) == 0], torch.zeros(int((masks == 0).sum()) * 3))
    assert pixel_values.min() >= -1 and pixel_values.max() <= 1


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        process_images(torch.zeros(4, 64, 64, dtype=torch.uint8), 256)
    with pytest.raises(ValueError, match="channels"):
        process_images(torch.zeros(1, 4, 64, 64, dtype=torch.uint8), 256)

"""SSIM and PSNR between paired frames (scikit-image's implementations), for generated vs. source videos."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 RGB images (Gaussian window, sigma 1.5, as in Wang et al. 2004)."""
    return float(structural_similarity(reference, test, channel_axis=2, data_range=255,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 images; identical images give +inf."""
    if np.array_equal(reference, test):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, test, data_range=255))

"""Fréchet distance between Gaussians fitted to two feature sets (FVD, FID), with streaming statistics.

d = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), the real part of the matrix square root as
StyleGAN-V and the reference take it; covariances are unbiased (``np.cov``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


class FeatureStats:
    """Running count, sum and sum of outer products in float64: memory is O(D^2), not O(N D)."""

    def __init__(self, dim: int):
        self.count = 0
        self.total = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def update(self, feats: np.ndarray) -> None:
        """Add (N, D) features."""
        feats = np.asarray(feats, np.float64).reshape(-1, self.total.shape[0])
        self.count += len(feats)
        self.total += feats.sum(0)
        self.outer += feats.T @ feats

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (divides by N - 1), like ``np.cov(feats, rowvar=False)``."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {self.count}")
        mean = self.mean
        return (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)

    @classmethod
    def of(cls, feats: np.ndarray) -> "FeatureStats":
        feats = np.asarray(feats)
        stats = cls(feats.shape[1])
        stats.update(feats)
        return stats


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2)."""
    with warnings.catch_warnings():
        # Sets smaller than the feature width always have singular covariances; the root is still usable.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root, _ = scipy.linalg.sqrtm(sigma1 @ sigma2, disp=False)
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - 2 * root)))


def stats_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance of two feature sets' Gaussians."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)

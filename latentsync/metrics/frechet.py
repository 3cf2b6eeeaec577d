"""Fréchet distance between Gaussians fitted to two feature sets (FVD, FID), with streaming statistics.

d = |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1 S_2)^(1/2)); covariances are unbiased (``np.cov``).
The reference takes the real part of scipy's general matrix square root; the trace is computed here
from the eigenvalues of the symmetric S_1^(1/2) S_2 S_1^(1/2) (same eigenvalues as S_1 S_2), which is
the same number (negative round-off eigenvalues count 0, as their imaginary roots do there) and
takes seconds instead of minutes for 2048-d FID features.
"""

from __future__ import annotations

import numpy as np


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


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 sigma2)^(1/2)) for covariance matrices (symmetric, positive semi-definite)."""
    root = _psd_sqrt(sigma1)
    middle = root @ sigma2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2)."""
    mean_term = float(np.square(mu1 - mu2).sum())
    return mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2 * trace_sqrt_product(sigma1, sigma2)


def stats_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance of two feature sets' Gaussians."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)

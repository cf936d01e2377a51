"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""

from __future__ import annotations

import numpy as np


def kernel_inception_distance(
    real_features: np.ndarray,
    gen_features: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    rng: np.random.RandomState | None = None,
) -> float:
    """KID with k(a, b) = (a.b / dim + 1)^3; subsets of m = min(#real, #gen, max_subset_size) drawn w/o replacement."""
    rng = np.random if rng is None else rng  # upstream draws from numpy's global RNG
    dim = real_features.shape[1]
    m = min(real_features.shape[0], gen_features.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated images, got {real_features.shape[0]}/{gen_features.shape[0]}")
    total = 0.0
    for _ in range(num_subsets):
        x = np.asarray(gen_features[rng.choice(gen_features.shape[0], m, replace=False)], np.float64)
        y = np.asarray(real_features[rng.choice(real_features.shape[0], m, replace=False)], np.float64)
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        # Off-diagonal sums make the within-set terms unbiased.
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m - 1)
        total += within - k_xy.sum() * 2 / m
    return float(total / num_subsets / m)

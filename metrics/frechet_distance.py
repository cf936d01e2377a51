"""Fréchet Inception Distance from feature means and covariances (float64, scipy's matrix square root)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     verbose: bool = False) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), real part of the square root.
    verbose: say so before the square root (for 2048 features, 30-60 s on one busy CPU core, silent otherwise)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"FID: statistics differ in shape ({mu1.shape} vs {mu2.shape})")
    mean_term = np.square(mu1 - mu2).sum()
    if verbose:
        n = sigma1.shape[0]
        print(f"FID: square root of the {n}x{n} covariance product (the slow step on a CPU)...", flush=True)
    root = scipy.linalg.sqrtm(np.dot(sigma1, sigma2))
    root = root[0] if isinstance(root, tuple) else root  # older SciPy may return (root, error)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - root * 2)))

"""Inception Score from class probabilities: exp(E[KL(p(y|x) || p(y))]) per split, mean and std over splits."""

from __future__ import annotations

import numpy as np


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < num_splits:
        raise ValueError(f"IS needs [N >= {num_splits}, classes] probabilities, got shape {probs.shape}")
    scores = []
    n = probs.shape[0]
    for i in range(num_splits):
        part = probs[i * n // num_splits: (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = part * (np.log(part + 1e-30) - np.log(marginal + 1e-30))  # 0 log 0 counts as 0
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))

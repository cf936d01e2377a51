"""Improved precision and recall (k-NN manifolds), with pairwise distances computed in batches."""

from __future__ import annotations

import torch


def pairwise_distances(rows: torch.Tensor, cols: torch.Tensor, col_batch_size: int = 10000) -> torch.Tensor:
    """[R, C] Euclidean distances, computed in column batches to bound memory."""
    parts = [torch.cdist(rows.float(), cols[i: i + col_batch_size].float()) for i in range(0, cols.shape[0], col_batch_size)]
    return torch.cat(parts, dim=1)


def manifold_radii(manifold: torch.Tensor, nhood_size: int, row_batch_size: int, col_batch_size: int) -> torch.Tensor:
    """Distance from each manifold point to its k-th nearest other point (k+1-th counting itself)."""
    if manifold.shape[0] <= nhood_size:
        raise ValueError(f"precision/recall needs more than {nhood_size} images per set, got {manifold.shape[0]}")
    radii = []
    for i in range(0, manifold.shape[0], row_batch_size):
        dist = pairwise_distances(manifold[i: i + row_batch_size], manifold, col_batch_size)
        radii.append(dist.kthvalue(nhood_size + 1, dim=1).values)
    return torch.cat(radii)


def fraction_inside(manifold: torch.Tensor, radii: torch.Tensor, probes: torch.Tensor,
                    row_batch_size: int, col_batch_size: int) -> float:
    """Share of probes within the radius of at least one manifold point."""
    inside = []
    for i in range(0, probes.shape[0], row_batch_size):
        dist = pairwise_distances(probes[i: i + row_batch_size], manifold, col_batch_size)
        inside.append((dist <= radii.unsqueeze(0)).any(dim=1))
    return float(torch.cat(inside).float().mean())


def precision_recall(
    real_features: torch.Tensor,
    gen_features: torch.Tensor,
    nhood_size: int = 3,
    row_batch_size: int = 10000,
    col_batch_size: int = 10000,
) -> tuple[float, float]:
    """precision: generated probes inside the real manifold; recall: real probes inside the generated one."""
    real_radii = manifold_radii(real_features, nhood_size, row_batch_size, col_batch_size)
    gen_radii = manifold_radii(gen_features, nhood_size, row_batch_size, col_batch_size)
    precision = fraction_inside(real_features, real_radii, gen_features, row_batch_size, col_batch_size)
    recall = fraction_inside(gen_features, gen_radii, real_features, row_batch_size, col_batch_size)
    return precision, recall

"""Accumulate detector features: all of them (KID, PR, IS) or float64 running mean/covariance (FID)."""

from __future__ import annotations

import numpy as np

from dnnlib.util import atomic_write


class FeatureStats:
    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: int | None = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self.all_features: list[np.ndarray] = []
        self.raw_mean: np.ndarray | None = None
        self.raw_cov: np.ndarray | None = None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        """Add [N, D] features, dropping any beyond max_items."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.append: expected [N, D] features, got shape {x.shape}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        if x.shape[0] == 0:
            return
        self._set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def _set_num_features(self, num: int) -> None:
        if self.num_features is None:
            self.num_features = num
            if self.capture_mean_cov:
                self.raw_mean = np.zeros(num, dtype=np.float64)
                self.raw_cov = np.zeros((num, num), dtype=np.float64)
        elif num != self.num_features:
            raise ValueError(f"FeatureStats: feature size changed from {self.num_features} to {num}")

    def get_all(self) -> np.ndarray:
        if not self.capture_all:
            raise RuntimeError("FeatureStats: created without capture_all")
        if not self.all_features:
            return np.zeros((0, self.num_features or 0), dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (biased, 1/N) covariance, as FID defines them."""
        if not self.capture_mean_cov or self.num_items == 0:
            raise RuntimeError("FeatureStats: no mean/covariance captured")
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    # Cache files are .npz (plain arrays), so reading a cache never runs pickled code.
    def save(self, path: str) -> None:
        arrays = {"num_items": np.int64(self.num_items), "num_features": np.int64(self.num_features or 0),
                  "capture_all": np.bool_(self.capture_all), "capture_mean_cov": np.bool_(self.capture_mean_cov)}
        if self.capture_all:
            arrays["all_features"] = self.get_all()
        if self.capture_mean_cov and self.raw_mean is not None:
            arrays["raw_mean"], arrays["raw_cov"] = self.raw_mean, self.raw_cov
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> "FeatureStats":
        with np.load(path, allow_pickle=False) as data:
            stats = cls(capture_all=bool(data["capture_all"]), capture_mean_cov=bool(data["capture_mean_cov"]))
            stats.num_items = int(data["num_items"])
            stats.num_features = int(data["num_features"]) or None
            if stats.capture_all:
                stats.all_features = [data["all_features"]]
            if stats.capture_mean_cov and "raw_mean" in data:
                stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
        return stats

"""Accumulate detector features: all of them (KID, PR, IS) or float64 running mean/covariance (FID)."""

from __future__ import annotations

import numpy as np

from dnnlib.util import atomic_write
from torch_utils import load_budget


class InvalidCache(ValueError):
    """A stats cache that is unreadable, of the wrong size or not finite; the caller rebuilds it."""


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
    def load(cls, path: str, expected_items: int | None = None) -> "FeatureStats":
        """A cache written by `save`, verified: readable within its budget, `expected_items` rows (when given),
        every array of the recorded size and finite. Anything else raises InvalidCache (one line)."""
        rows, features = expected_items, load_budget.MAX_FEATURES
        # With a known item count nothing beyond an honest cache's size is read: rows x features float32 features
        # plus a float64 mean and covariance (a poisoned cache of 292,968 rows is refused from its header).
        limit = rows * features * 4 + features * (features + 1) * 8 + 4096 if rows is not None else load_budget.GiB
        try:
            data = load_budget.read_npz(path, path, max_bytes=limit, expected_shapes={
                "all_features": lambda shape: _rows_mismatch(shape, rows),
                "raw_cov": lambda shape: None if len(shape) == 2 and shape[0] == shape[1] <= features else "not square",
            })
        except (load_budget.OverBudget, OSError) as error:
            raise InvalidCache(load_budget.first_line(error)) from None
        try:
            stats = cls(capture_all=bool(data["capture_all"]), capture_mean_cov=bool(data["capture_mean_cov"]))
            stats.num_items = int(data["num_items"])
            stats.num_features = int(data["num_features"]) or None
            if stats.capture_all:
                stats.all_features = [data["all_features"]]
            if stats.capture_mean_cov:
                stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidCache(f"{path}: lacks or garbles an entry ({type(error).__name__}: {error})") from None
        stats._verify(path, expected_items)
        return stats

    def _verify(self, path: str, expected_items: int | None) -> None:
        """Item count, array shapes and finiteness against what this cache records."""
        n, f = self.num_items, self.num_features or 0
        if expected_items is not None and n != expected_items:
            raise InvalidCache(f"{path}: records {n} items, the dataset gives {expected_items}")
        if self.capture_all and self.all_features[0].shape != (n, f):
            raise InvalidCache(f"{path}: all_features has shape {self.all_features[0].shape}, it records {n} x {f}")
        if self.capture_mean_cov and (self.raw_mean.shape != (f,) or self.raw_cov.shape != (f, f)):
            raise InvalidCache(f"{path}: mean/covariance shapes {self.raw_mean.shape}, {self.raw_cov.shape} do not "
                               f"match its {f} features")
        for array in (self.all_features if self.capture_all else []) + (
                [self.raw_mean, self.raw_cov] if self.capture_mean_cov else []):
            if not np.isfinite(array).all():
                raise InvalidCache(f"{path}: holds NaN or infinite values")


def _rows_mismatch(shape: tuple, rows: int | None) -> str | None:
    if len(shape) != 2 or shape[1] > load_budget.MAX_FEATURES:
        return f"expected [items, features <= {load_budget.MAX_FEATURES}]"
    if rows is not None and shape[0] != rows:
        return f"expected {rows} rows, one per dataset item"
    return None

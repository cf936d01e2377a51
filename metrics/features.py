"""Run a detector over the real dataset (cached) or over generated images, sharded across processes.

Sharding: with `num_gpus` processes, rank r handles items r, r + num_gpus, ...; each batch's features are
all-gathered (when torch.distributed is initialised), so every rank ends with the full statistics.
Real statistics are cached as .npz under <dnnlib cache>/gan-metrics/, keyed by the dataset options, the dataset's
path, size and modification time, the detector and the statistics options.
"""

from __future__ import annotations

import sys

import copy
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from dnnlib import util
from metrics.feature_stats import FeatureStats, InvalidCache
from dnnlib.progress import ProgressBar
from training import dataset_options
from training.dataset_options import DEFAULT_DATASET_CLASS  # noqa: F401 - re-exported for the metrics scripts


@dataclass
class Detector:
    """A feature extractor: uint8-range images [N, 3, H, W] on the device -> [N, D] tensor."""

    name: str  # identifies the weights and output in cache keys, e.g. "inception-2015-12-05-features"
    fn: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class MetricOptions:
    G: Any = None
    G_kwargs: dict = field(default_factory=dict)
    dataset_kwargs: dict = field(default_factory=dict)
    num_gpus: int = 1
    rank: int = 0
    device: torch.device = torch.device("cpu")
    batch_size: int = 64
    progress: bool | None = None  # None: print on rank 0
    cache: bool = True
    inception: str | None = None  # user weight file/URL for the Inception detector
    vgg16: str | None = None
    shared: Any = None  # metrics.shared_features.SharedFeatures when one call evaluates several metrics

    @property
    def verbose(self) -> bool:
        return self.rank == 0 if self.progress is None else bool(self.progress) and self.rank == 0


def open_dataset(dataset_kwargs: dict) -> Any:
    """Only our dataset class, with checked options (the options may come from a snapshot: training/dataset_options)."""
    return dataset_options.open_dataset(dataset_kwargs)


# ----------------------------------------------------------------------------
# Shared helpers.

def _gather(x: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Concatenate a batch from all ranks (rank-major), or return it unchanged in a single process."""
    if num_gpus <= 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return x
    parts = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(parts, x)
    return torch.stack(parts, dim=1).flatten(0, 1)  # interleave back into item order


def _to_rgb(img: torch.Tensor) -> torch.Tensor:
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


def _dataset_fingerprint(dataset_kwargs: dict, dataset: Any) -> dict:
    path = dataset_kwargs.get("path")
    stamp = None
    if isinstance(path, str) and os.path.exists(path):
        stamp = _latest_mtime(path)
        path = _resolved(path)
        nbytes = os.path.getsize(path) if os.path.isfile(path) else None  # a zip rewritten within one mtime tick
        return {"path": path, "size": len(dataset), "mtime": stamp, "bytes": nbytes}
    return {"path": path, "size": len(dataset), "mtime": stamp}


def _latest_mtime(path: str) -> float:
    if os.path.isfile(path):
        return os.stat(path).st_mtime
    latest = os.stat(path).st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            latest = max(latest, os.stat(os.path.join(root, name)).st_mtime)
    return latest


CAPTURE_FLAGS = ("capture_all", "capture_mean_cov")


def stats_cache_path(dataset_kwargs: dict, dataset: Any, detector: Detector, stats_kwargs: dict) -> str:
    """The real set's feature cache file. Keyed on what the features depend on: the dataset's resolved absolute
    path, size and newest mtime (not the path as typed), its other options, the detector and the item count
    clipped to the dataset. Not on what is captured: one file serves FID (mean/cov) and KID (all features)."""
    kwargs = dict(dataset_kwargs)
    if isinstance(kwargs.get("path"), str):
        kwargs["path"] = _resolved(kwargs["path"])
    stats_kwargs = {k: v for k, v in stats_kwargs.items() if k not in CAPTURE_FLAGS}
    if stats_kwargs.get("max_items") is not None:
        stats_kwargs["max_items"] = min(int(stats_kwargs["max_items"]), len(dataset))
    else:
        stats_kwargs["max_items"] = len(dataset)
    key = {
        "dataset_kwargs": dict(sorted(kwargs.items())),
        "dataset": _dataset_fingerprint(dataset_kwargs, dataset),
        "detector": detector.name,
        "stats_kwargs": dict(sorted(stats_kwargs.items())),
    }
    digest = hashlib.md5(repr(sorted(key.items())).encode("utf-8")).hexdigest()
    name = getattr(dataset, "name", None) or os.path.basename(str(dataset_kwargs.get("path", "dataset")))
    return util.make_cache_dir_path("gan-metrics", f"{name}-{detector.name}-{digest}.npz")


def _resolved(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _cache_exists(path: str, opts: MetricOptions) -> bool:
    flag = torch.tensor(float(os.path.isfile(path)), device=opts.device)
    if opts.num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(flag, src=0)  # rank 0 decides, so all ranks take the same path
    return bool(flag.item())


def _load_if_it_has(path: str, opts: MetricOptions, capture: dict,
                    num_items: int) -> tuple[FeatureStats | None, dict]:
    """The cached stats when they hold everything asked for; else None and the capture flags a recomputation
    should use (what is asked plus what the file already held, so the cache only grows). A cache that fails
    its checks (item count, shapes, finite values, size) is never used as-is: it is computed again and
    rewritten atomically."""
    if not _cache_exists(path, opts):
        return None, capture
    try:
        cached = FeatureStats.load(path, expected_items=num_items)
    except InvalidCache as error:
        print(f"note: rebuilding the stats cache: {error}", flush=True)
        return None, capture
    held = {flag: bool(getattr(cached, flag)) for flag in CAPTURE_FLAGS}
    if all(held[flag] or not capture.get(flag) for flag in CAPTURE_FLAGS):
        return cached, capture
    return None, {flag: held[flag] or bool(capture.get(flag)) for flag in CAPTURE_FLAGS}


# ----------------------------------------------------------------------------
# Real images.

def compute_dataset_stats(opts: MetricOptions, detector: Detector, rel_lo: float = 0, rel_hi: float = 1,
                          max_items: int | None = None, **stats_kwargs: Any) -> FeatureStats:
    dataset = open_dataset(opts.dataset_kwargs)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    cache_file = None
    if opts.cache:
        cache_file = stats_cache_path(opts.dataset_kwargs, dataset, detector, dict(stats_kwargs, max_items=max_items))
        cached, capture = _load_if_it_has(cache_file, opts, {k: stats_kwargs.pop(k, False) for k in CAPTURE_FLAGS},
                                          num_items)
        if cached is not None:
            return cached
        stats_kwargs.update(capture)

    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = ProgressBar(num_items, label="dataset features", stream=sys.stdout, log_interval=5.0, enabled=opts.verbose)
    indices = [(i * opts.num_gpus + opts.rank) % num_items for i in range((num_items - 1) // opts.num_gpus + 1)]
    for start in range(0, len(indices), opts.batch_size):
        batch = [dataset[i][0] for i in indices[start: start + opts.batch_size]]
        images = _to_rgb(torch.from_numpy(np.stack(batch)).to(opts.device))
        with torch.no_grad():
            features = detector.fn(images)
        stats.append(_gather(features, opts.num_gpus).float().cpu().numpy())
        progress.set(stats.num_items)

    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats


# ----------------------------------------------------------------------------
# Generated images.

class LabelSampler:
    """Conditioning labels drawn from random dataset items (empty vectors for unconditional data)."""

    def __init__(self, dataset: Any, device: torch.device, seed: int):
        self.dataset = dataset
        self.device = device
        self.rng = np.random.RandomState(seed)

    def sample(self, n: int) -> torch.Tensor:
        labels = [self.dataset.get_label(self.rng.randint(len(self.dataset))) for _ in range(n)]
        return torch.from_numpy(np.stack(labels).astype(np.float32).reshape(n, -1)).to(self.device)


def generate_images(G: Any, z: torch.Tensor, c: torch.Tensor, G_kwargs: dict) -> torch.Tensor:
    """G output in [-1, 1] -> uint8 [N, 3, H, W] as the detectors expect (x * 127.5 + 128, clamped)."""
    img = G(z=z, c=c, **G_kwargs)
    img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return _to_rgb(img)


def compute_generator_stats(opts: MetricOptions, detector: Detector, num_items: int, seed: int | None = None,
                            **stats_kwargs: Any) -> FeatureStats:
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    dataset = open_dataset(opts.dataset_kwargs)
    seed = int(np.random.randint(1 << 31)) if seed is None else seed  # fresh draw per evaluation, as upstream
    generator = torch.Generator(device=opts.device).manual_seed(seed * opts.num_gpus + opts.rank)
    labels = LabelSampler(dataset, opts.device, seed * opts.num_gpus + opts.rank)

    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    progress = ProgressBar(num_items, label="generator features", stream=sys.stdout, log_interval=5.0, enabled=opts.verbose)
    per_rank = max(1, opts.batch_size // max(opts.num_gpus, 1))
    while not stats.is_full():
        remaining = -(-(num_items - stats.num_items) // max(opts.num_gpus, 1))  # ceil: no wasted images at the end
        batch = min(per_rank, remaining)
        z = torch.randn([batch, G.z_dim], device=opts.device, generator=generator)
        with torch.no_grad():
            features = detector.fn(generate_images(G, z, labels.sample(batch), opts.G_kwargs))
        stats.append(_gather(features, opts.num_gpus).float().cpu().numpy())
        progress.set(stats.num_items)
    return stats

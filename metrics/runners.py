"""One function per metric family: pick the detector, collect real/generated statistics, apply the formula.

Each returns {result-key suffix: value}; metric_main prefixes the metric name ("" -> "fid50k_full",
"_precision" -> "pr50k3_full_precision").
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch

from metrics import detectors
from metrics.features import Detector, MetricOptions, compute_generator_stats
from metrics.shared_features import dataset_stats, generator_stats
from metrics.frechet_distance import frechet_distance
from metrics.inception import NO_CLASSIFIER
from metrics.inception_score import inception_score
from metrics.kernel_inception_distance import kernel_inception_distance
from metrics.perceptual_path_length import compute_ppl
from metrics.precision_recall import precision_recall


# Detector roles: metrics of one call that use the same role and counts share one feature pass.
INCEPTION_FEATURES = "inception_features"
VGG16_EMBEDDING = "vgg16_embedding"


def timed_on_all_ranks(compute: Callable[[], Any], num_gpus: int) -> tuple[Any, float]:
    """compute()'s value and its wall time; with several processes, ranks wait for each other afterwards."""
    start = time.time()
    value = compute()
    total_time = time.time() - start
    if num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return value, total_time


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def inception_features(opts: MetricOptions) -> Detector:
    net = detectors.get_inception(opts.device, opts.inception)
    name = f"inception-{_stem(detectors.inception_source(opts.inception))}-features"
    return Detector(name, lambda img: net(img, return_features=True))


def inception_probs(opts: MetricOptions) -> Detector:
    net = detectors.get_inception(opts.device, opts.inception)
    if net.output is None:  # say so (one line) before generating 50k images
        raise ValueError(NO_CLASSIFIER)
    name = f"inception-{_stem(detectors.inception_source(opts.inception))}-probs"
    return Detector(name, lambda img: net(img, return_features=False, no_output_bias=True))


def vgg16_embedding(opts: MetricOptions) -> Detector:
    net = detectors.get_vgg16(opts.device, opts.vgg16)
    name = f"vgg16-{_stem(detectors.vgg16_source(opts.vgg16))}-{'fc7' if net.has_fc else 'relu5_3avg'}"
    return Detector(name, lambda img: net.embed(img).half())


def fid(opts: MetricOptions, max_real: int | None, num_gen: int, detector: Detector | None = None) -> dict:
    detector = detector or inception_features(opts)
    real = dataset_stats(opts, detector, INCEPTION_FEATURES, max_real, capture_mean_cov=True)
    gen = generator_stats(opts, detector, INCEPTION_FEATURES, num_gen, capture_mean_cov=True)
    if opts.rank != 0:
        return {"": float("nan")}
    return {"": frechet_distance(*gen.get_mean_cov(), *real.get_mean_cov(), verbose=opts.verbose)}


def kid(opts: MetricOptions, max_real: int | None, num_gen: int, num_subsets: int = 100,
        max_subset_size: int = 1000, detector: Detector | None = None) -> dict:
    detector = detector or inception_features(opts)
    real = dataset_stats(opts, detector, INCEPTION_FEATURES, max_real, capture_all=True)
    gen = generator_stats(opts, detector, INCEPTION_FEATURES, num_gen, capture_all=True)
    if opts.rank != 0:
        return {"": float("nan")}
    return {"": kernel_inception_distance(real.get_all(), gen.get_all(), num_subsets, max_subset_size)}


def precision_and_recall(opts: MetricOptions, max_real: int | None, num_gen: int, nhood_size: int = 3,
                         row_batch_size: int = 10000, col_batch_size: int = 10000,
                         detector: Detector | None = None) -> dict:
    detector = detector or vgg16_embedding(opts)
    real = dataset_stats(opts, detector, VGG16_EMBEDDING, max_real, capture_all=True)
    gen = generator_stats(opts, detector, VGG16_EMBEDDING, num_gen, capture_all=True)
    if opts.rank != 0:
        return {"_precision": float("nan"), "_recall": float("nan")}
    real_t = torch.from_numpy(real.get_all()).to(opts.device)
    gen_t = torch.from_numpy(gen.get_all()).to(opts.device)
    p, r = precision_recall(real_t, gen_t, nhood_size, row_batch_size, col_batch_size)
    return {"_precision": p, "_recall": r}


def inception_score_metric(opts: MetricOptions, num_gen: int, num_splits: int = 10,
                           detector: Detector | None = None) -> dict:
    detector = detector or inception_probs(opts)
    gen = compute_generator_stats(opts, detector, num_gen, capture_all=True)
    if opts.rank != 0:
        return {"_mean": float("nan"), "_std": float("nan")}
    mean, std = inception_score(gen.get_all(), num_splits)
    return {"_mean": mean, "_std": std}


def ppl(opts: MetricOptions, num_samples: int, space: str, sampling: str, crop: bool,
        epsilon: float = 1e-4, distance=None) -> dict:
    if distance is None:
        net = detectors.get_vgg16(opts.device, opts.vgg16)
        distance = net.lpips
    batch = max(1, min(opts.batch_size, 16) // max(opts.num_gpus, 1))
    value = compute_ppl(opts, distance, num_samples, epsilon, space, sampling, crop, batch_size=batch)
    return {"": value if opts.rank == 0 else float("nan")}

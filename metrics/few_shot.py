"""FID and KID for the few-shot protocol from ONE pass of generated images.

The data-efficient GAN papers (ADA, InsGen, FakeCLR) score a generator with N generated images
against the whole training set (x-flips included when training mirrored it). `calc_metric` can
already do that by name (`fid50k_full`, `kid50k_full`, `fid500_full`, ...), each name on its own
generating and embedding N images (`metric_main.calc_metrics` shares them between names);
`calc_fid_kid` computes both from one set of Inception features with a seed of the caller's choice
(scripts/compare_methods.py scores every snapshot this way).

Given the same numpy seed before the call, the values equal those of
`calc_metric(f"fid{tag}_full")` and `calc_metric(f"kid{tag}_full")` (same images, same real
statistics, same KID subsets); only the real-statistics cache file differs (it holds both).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dnnlib import util
from metrics import runners
from metrics.features import Detector, MetricOptions, compute_dataset_stats, compute_generator_stats
from metrics.frechet_distance import frechet_distance
from metrics.kernel_inception_distance import kernel_inception_distance

_KID_FULL_MAX_REAL = 1_000_000  # as kid<N>_full in metric_main


def count_tag(num_gen: int) -> str:
    """The count as metric names write it: 50000 -> '50k', 500 -> '500'."""
    num_gen = int(num_gen)
    return f"{num_gen // 1000}k" if num_gen >= 1000 and num_gen % 1000 == 0 else str(num_gen)


def metric_names(num_gen: int) -> tuple[str, str]:
    """('fid<N>_full', 'kid<N>_full'), e.g. ('fid50k_full', 'kid50k_full') for 50,000 images."""
    tag = count_tag(num_gen)
    return f"fid{tag}_full", f"kid{tag}_full"


def fid_kid_full(opts: MetricOptions, num_gen: int, seed: int | None = None, num_subsets: int = 100,
                 max_subset_size: int = 1000, detector: Detector | None = None) -> dict[str, float]:
    """{'fid': ..., 'kid': ...}: num_gen generated images vs the whole dataset of opts.dataset_kwargs.

    seed: latents/labels of the generated images (None: a fresh draw from numpy's global RNG, as
    calc_metric does). KID subsets use numpy's global RNG, as in metric_main. detector: Inception-v3 pool
    features by default; another Detector (a cheap stand-in in tests) gives FID/KID in its feature space.
    """
    if int(num_gen) < 2:
        raise ValueError(f"fid_kid_full: num_gen must be at least 2, got {num_gen}")
    detector = detector or runners.inception_features(opts)
    real = compute_dataset_stats(opts, detector, max_items=None, capture_all=True, capture_mean_cov=True)
    gen = compute_generator_stats(opts, detector, int(num_gen), seed=seed, capture_all=True, capture_mean_cov=True)
    if opts.rank != 0:
        return {"fid": float("nan"), "kid": float("nan")}
    fid = frechet_distance(*gen.get_mean_cov(), *real.get_mean_cov(), verbose=opts.verbose)
    kid = kernel_inception_distance(real.get_all()[:_KID_FULL_MAX_REAL], gen.get_all(), num_subsets, max_subset_size)
    return {"fid": float(fid), "kid": float(kid)}


def calc_fid_kid(
    G: Any,
    dataset_kwargs: dict,
    num_gen: int,
    seed: int | None = None,
    num_gpus: int = 1,
    rank: int = 0,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 64,
    progress: bool | None = None,
    cache: bool = True,
    G_kwargs: dict | None = None,
    inception: str | None = None,
    detector: Detector | None = None,
) -> util.EasyDict:
    """FID and KID of G with num_gen generated images against the full dataset, from one feature pass.

    Returns the shape of metric_main.calc_metric's result: results = {'fid<N>_full': ..., 'kid<N>_full': ...},
    plus metric ('fid<N>_full,kid<N>_full'), total_time, total_time_str, num_gpus, num_gen and seed.
    Every rank must call it when num_gpus > 1; only rank 0's values are meaningful.
    """
    if seed is None:
        seed = int(np.random.randint(1 << 31))  # the draw compute_generator_stats would make
    opts = MetricOptions(G=G, G_kwargs=dict(G_kwargs or {}), dataset_kwargs=dict(dataset_kwargs), num_gpus=num_gpus,
                         rank=rank, device=torch.device(device), batch_size=batch_size, progress=progress, cache=cache,
                         inception=inception)
    values, total_time = runners.timed_on_all_ranks(lambda: fid_kid_full(opts, num_gen, seed=seed, detector=detector),
                                                    num_gpus)
    fid_name, kid_name = metric_names(num_gen)
    return util.EasyDict(results=util.EasyDict({fid_name: values["fid"], kid_name: values["kid"]}),
                         metric=f"{fid_name},{kid_name}", total_time=total_time,
                         total_time_str=util.format_time(total_time), num_gpus=num_gpus, num_gen=int(num_gen),
                         seed=int(seed))

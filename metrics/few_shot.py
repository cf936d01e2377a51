"""FID and KID for the few-shot protocol from ONE pass of generated images.

The data-efficient GAN papers (ADA, InsGen, FakeCLR) score a generator with N generated images
against the whole training set (x-flips included when training mirrored it): the metrics `fid<N>_full`
and `kid<N>_full`. This module names them for a count and evaluates both through metric_main with a
seed of the caller's choice, so they share one feature pass (metrics.shared_features) and every snapshot
of a comparison is scored with the same images (scripts/compare_methods.py).

Given the same numpy seed before the call, the values equal those of `calc_metric(f"fid{tag}_full")`
and `calc_metric(f"kid{tag}_full")` (same images, same real statistics, same KID subsets).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dnnlib import util
from metrics import metric_main
from metrics.features import Detector, MetricOptions


def count_tag(num_gen: int) -> str:
    """The count as metric names write it: 50000 -> '50k', 500 -> '500'."""
    num_gen = int(num_gen)
    return f"{num_gen // 1000}k" if num_gen >= 1000 and num_gen % 1000 == 0 else str(num_gen)


def metric_names(num_gen: int) -> tuple[str, str]:
    """('fid<N>_full', 'kid<N>_full'), e.g. ('fid50k_full', 'kid50k_full') for 50,000 images."""
    if int(num_gen) < 2:
        raise ValueError(f"few-shot FID/KID: num_gen must be at least 2, got {num_gen}")
    tag = count_tag(num_gen)
    return f"fid{tag}_full", f"kid{tag}_full"


def fid_kid_full(opts: MetricOptions, num_gen: int, seed: int | None = None,
                 detector: Detector | None = None) -> dict[str, float]:
    """{'fid': ..., 'kid': ...}: num_gen generated images vs the whole dataset of opts.dataset_kwargs.

    seed: latents/labels of the generated images (None: a fresh draw from numpy's global RNG, as
    calc_metric does). KID subsets use numpy's global RNG, as in metric_main. detector: Inception-v3 pool
    features by default; another Detector (the harness's colour check, tests) gives FID/KID in its space.
    """
    specs = metric_main.parse_metrics(list(metric_names(num_gen)))
    opts = dataclasses.replace(opts, shared=metric_main.share_features(specs, seed))
    fid, kid = (spec.run(opts, detector=detector)[""] for spec in specs)
    return {"fid": float(fid), "kid": float(kid)}


def calc_fid_kid(G: Any, dataset_kwargs: dict, num_gen: int, seed: int | None = None,
                 **kwargs: Any) -> util.EasyDict:
    """FID and KID of G with num_gen generated images against the full dataset, from one feature pass.

    kwargs: metric_main.calc_metric's (num_gpus, rank, device, batch_size, progress, cache, G_kwargs, ...).
    Returns the shape of calc_metric's result: results = {'fid<N>_full': ..., 'kid<N>_full': ...}, plus
    metric ('fid<N>_full,kid<N>_full'), total_time, total_time_str, num_gpus, num_gen and seed.
    Every rank must call it when num_gpus > 1; only rank 0's values are meaningful.
    """
    names = metric_names(num_gen)
    if seed is None:
        seed = int(np.random.randint(1 << 31))  # the draw compute_generator_stats would make
    fid, kid = metric_main.calc_metrics(list(names), G, dataset_kwargs, seed=seed, **kwargs)
    total_time = fid.total_time + kid.total_time
    return util.EasyDict(results=util.EasyDict({**fid.results, **kid.results}), metric=",".join(names),
                         total_time=total_time, total_time_str=util.format_time(total_time), num_gpus=fid.num_gpus,
                         num_gen=int(num_gen), seed=int(seed))

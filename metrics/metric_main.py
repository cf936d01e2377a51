"""Metric registry (upstream names plus few-shot counts), the calc_metric entry point and result reporting.

Names:
- fid<N>[_full], kid<N>[_full]: N generated images, e.g. fid50k_full, fid5k_full, kid1k, fid500_full.
  "_full" compares with the whole dataset (KID: at most 1,000,000 images); otherwise with N real images.
- pr<N>k<K>[_full]: precision/recall with K nearest neighbours, e.g. pr50k3_full (full: at most 200,000 reals).
- is<N>: Inception Score over N generated images in 10 splits, e.g. is50k.
- ppl_zfull, ppl_wfull, ppl_zend, ppl_wend (cropped), ppl2_wend (uncropped): 50,000 samples.

`calc_metrics` evaluates a list: FID, KID and PR metrics with the same detector and sample counts share one
feature pass (`metrics.shared_features`), so `fid500_full,kid500_full` embeds the images once.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from dnnlib import util
from metrics import runners
from metrics.features import MetricOptions
from metrics.runners import INCEPTION_FEATURES, VGG16_EMBEDDING
from metrics.shared_features import GENERATED, REAL, FeatureRequest, SharedFeatures

UPSTREAM_METRICS = (
    "fid50k_full", "kid50k_full", "pr50k3_full", "ppl2_wend", "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend",
    "is50k", "fid50k", "kid50k", "pr50k3",
)
_KID_FULL_MAX_REAL = 1_000_000
_PR_FULL_MAX_REAL = 200_000
_PPL_SAMPLES = 50_000
_PPL_CONFIGS = {  # name: (space, sampling, crop)
    "ppl_zfull": ("z", "full", True), "ppl_wfull": ("w", "full", True), "ppl_zend": ("z", "end", True),
    "ppl_wend": ("w", "end", True), "ppl2_wend": ("w", "end", False),
}


@dataclass
class MetricSpec:
    name: str
    run: Callable[..., dict]  # run(opts, detector=None): a stand-in detector replaces the metric's own (tests, checks)
    features: tuple[FeatureRequest, ...] = ()  # what it reads, so one call can share the passes


def _real_and_generated(role: str, max_real: int | None, num_gen: int, **capture: bool) -> tuple[FeatureRequest, ...]:
    return FeatureRequest(REAL, role, max_real, **capture), FeatureRequest(GENERATED, role, num_gen, **capture)


def _count(digits: str, k: str) -> int:
    return int(digits) * (1000 if k else 1)


def parse_metric(name: str) -> MetricSpec | None:
    """MetricSpec for a valid name, else None."""
    if not isinstance(name, str):
        return None
    if name in _PPL_CONFIGS:
        space, sampling, crop = _PPL_CONFIGS[name]
        return MetricSpec(name, lambda o, detector=None: runners.ppl(o, _PPL_SAMPLES, space, sampling, crop))
    m = re.fullmatch(r"(fid|kid)(\d+)(k?)(_full)?", name)
    if m and _count(m[2], m[3]) >= 2:
        num, full = _count(m[2], m[3]), bool(m[4])
        if m[1] == "fid":
            max_real = None if full else num
            return MetricSpec(name, lambda o, detector=None: runners.fid(o, max_real, num, detector=detector),
                              _real_and_generated(INCEPTION_FEATURES, max_real, num, capture_mean_cov=True))
        max_real = _KID_FULL_MAX_REAL if full else num
        return MetricSpec(name, lambda o, detector=None: runners.kid(o, max_real, num, detector=detector),
                          _real_and_generated(INCEPTION_FEATURES, max_real, num, capture_all=True))
    m = re.fullmatch(r"pr(\d+)(k)(\d+)(_full)?", name)
    if m and int(m[3]) >= 1 and _count(m[1], m[2]) > int(m[3]):
        num, nhood = _count(m[1], m[2]), int(m[3])
        max_real = _PR_FULL_MAX_REAL if m[4] else num
        return MetricSpec(name, lambda o, detector=None: runners.precision_and_recall(o, max_real, num, nhood_size=nhood,
                                                                                    detector=detector),
                          _real_and_generated(VGG16_EMBEDDING, max_real, num, capture_all=True))
    m = re.fullmatch(r"is(\d+)(k?)", name)
    if m and _count(m[1], m[2]) >= 10:
        num = _count(m[1], m[2])
        return MetricSpec(name, lambda o, detector=None: runners.inception_score_metric(o, num, detector=detector))
    return None


def parse_metrics(metrics: list[str]) -> list[MetricSpec]:
    """MetricSpec of each name; an unknown name is a ValueError (one line) before anything is computed."""
    specs = [parse_metric(metric) for metric in metrics]
    for metric, spec in zip(metrics, specs):
        if spec is None:
            raise ValueError(invalid_metric_message(metric))
    return specs


def share_features(specs: list[MetricSpec], seed: int | None = None) -> SharedFeatures:
    """One feature pass per (source, detector, count) for these metrics; seed: their generated images' seed."""
    return SharedFeatures([request for spec in specs for request in spec.features], seed=seed)


def is_valid_metric(metric: str) -> bool:
    return parse_metric(metric) is not None


def list_valid_metrics() -> list[str]:
    """The upstream names; few-shot variants (fid5k_full, kid1k_full, pr5k3, is10k, ...) are also accepted."""
    return list(UPSTREAM_METRICS)


def invalid_metric_message(metric: str, option: str = "--metrics") -> str:
    return (f"{option}: unknown metric {metric!r}; use one of {', '.join(UPSTREAM_METRICS)} "
            f"or a few-shot count such as fid5k_full, kid1k_full, pr5k3_full, is10k")


def calc_metric(
    metric: str,
    G: Any,
    dataset_kwargs: dict,
    num_gpus: int = 1,
    rank: int = 0,
    device: torch.device = torch.device("cpu"),
    batch_size: int = 64,
    progress: bool | None = None,
    cache: bool = True,
    G_kwargs: dict | None = None,
    inception: str | None = None,
    vgg16: str | None = None,
    shared: SharedFeatures | None = None,
) -> util.EasyDict:
    """Evaluate one metric for generator G; every rank must call it (features are all-gathered).

    shared: features already computed for other metrics of the same call (see calc_metrics).
    """
    spec, = parse_metrics([metric])
    opts = MetricOptions(G=G, G_kwargs=dict(G_kwargs or {}), dataset_kwargs=dict(dataset_kwargs),
                         num_gpus=num_gpus, rank=rank, device=torch.device(device), batch_size=batch_size,
                         progress=progress, cache=cache, inception=inception, vgg16=vgg16, shared=shared)
    values, total_time = runners.timed_on_all_ranks(lambda: spec.run(opts), num_gpus)
    results = util.EasyDict({metric + suffix: float(v) for suffix, v in values.items()})
    return util.EasyDict(results=results, metric=metric, total_time=total_time,
                         total_time_str=util.format_time(total_time), num_gpus=num_gpus)


def calc_metrics(metrics: list[str], G: Any, dataset_kwargs: dict, seed: int | None = None,
                 **kwargs: Any) -> Iterator[util.EasyDict]:
    """calc_metric for each name in turn (results as they finish), sharing feature passes between them.

    Takes calc_metric's keyword arguments. seed: the generated images' latents/labels (None: a fresh draw, as
    upstream). A metric whose features were computed for an earlier one reports only its own remaining time,
    so total_time adds up to the wall time of the call.
    """
    shared = share_features(parse_metrics(metrics), seed)
    for metric in metrics:
        yield calc_metric(metric, G, dataset_kwargs, shared=shared, **kwargs)


def report_metric(result: dict, run_dir: str | None = None, snapshot_pkl: str | None = None) -> str:
    """Print the result as one JSON line and append it to <run_dir>/metric-<name>.jsonl; returns the line."""
    metric = result["metric"]
    if snapshot_pkl is not None and run_dir is not None:
        snapshot_pkl = os.path.relpath(os.path.abspath(snapshot_pkl), os.path.abspath(run_dir))
    line = json.dumps({
        "results": dict(result["results"]),
        "metric": metric,
        "total_time": result["total_time"],
        "total_time_str": result["total_time_str"],
        "num_gpus": result["num_gpus"],
        "snapshot_pkl": snapshot_pkl,
        "timestamp": time.time(),
    })
    print(line, flush=True)
    if run_dir is not None:
        util.atomic_append_line(os.path.join(run_dir, f"metric-{metric}.jsonl"), line)
    return line

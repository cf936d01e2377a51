"""One feature pass per evaluation: FID, KID and PR metrics asking for the same features share them.

`calc_metrics(["fid500_full", "kid500_full"])` used to embed the real set and 500 generated images twice,
once per metric. A `SharedFeatures` lives for one such call: the metrics declare up front which features
they will read (`FeatureRequest`: real or generated, detector role, item count, what to capture), and the
first metric that asks for a given (role, source, count) computes statistics capturing everything any of
them needs; later metrics get the same object. Generated images are therefore the same images for all
metrics of the call; with a `seed` they are the images of that seed (metrics.few_shot scores every snapshot
of a comparison with the same images).

Real counts are compared after clipping to the dataset size, so `fid500_full` (all reals) and
`kid500_full` (at most 1,000,000 reals) share on any dataset below a million images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metrics.feature_stats import FeatureStats
from metrics.features import Detector, MetricOptions, compute_dataset_stats, compute_generator_stats, open_dataset

REAL = "real"
GENERATED = "generated"


@dataclass(frozen=True)
class FeatureRequest:
    source: str  # REAL or GENERATED
    role: str  # which detector: "inception_features", "vgg16_embedding", ...
    count: int | None  # real: at most this many (None: all); generated: exactly this many
    capture_all: bool = False
    capture_mean_cov: bool = False


class SharedFeatures:
    """Feature statistics computed at most once per (source, detector role, item count) within one call."""

    def __init__(self, requests: list[FeatureRequest], seed: int | None = None):
        self.requests = list(requests)
        self.seed = seed  # latents/labels of the generated images; None: a fresh draw from numpy's global RNG
        self._stats: dict[tuple, FeatureStats] = {}
        self._dataset_size: int | None = None
        self.passes = 0  # feature passes actually run (a cached real set on disk counts too)

    def dataset_stats(self, opts: MetricOptions, detector: Detector, role: str, max_items: int | None,
                      **capture: bool) -> FeatureStats:
        count = self._real_count(opts, max_items)
        flags = self._merged_capture(REAL, role, count, opts, capture)
        key = (REAL, role, detector.name, count, flags)
        if key not in self._stats:
            self.passes += 1
            self._stats[key] = compute_dataset_stats(opts, detector, max_items=count, **dict(flags))
        return self._stats[key]

    def generator_stats(self, opts: MetricOptions, detector: Detector, role: str, num_items: int,
                        **capture: bool) -> FeatureStats:
        flags = self._merged_capture(GENERATED, role, num_items, opts, capture)
        key = (GENERATED, role, detector.name, num_items, flags)
        if key not in self._stats:
            self.passes += 1
            self._stats[key] = compute_generator_stats(opts, detector, num_items, seed=self.seed, **dict(flags))
        return self._stats[key]

    # -- helpers -------------------------------------------------------------------------------------------------

    def _real_count(self, opts: MetricOptions, max_items: int | None) -> int:
        if self._dataset_size is None:
            dataset = open_dataset(opts.dataset_kwargs)
            self._dataset_size = len(dataset)
            getattr(dataset, "close", lambda: None)()
        return self._dataset_size if max_items is None else min(self._dataset_size, max_items)

    def _merged_capture(self, source: str, role: str, count: int | None, opts: MetricOptions,
                        asked: dict[str, bool]) -> tuple[tuple[str, bool], ...]:
        """What this request and every planned request for the same features want captured."""
        wanted = {"capture_all": bool(asked.get("capture_all")), "capture_mean_cov": bool(asked.get("capture_mean_cov"))}
        for request in self.requests:
            if request.source != source or request.role != role:
                continue
            planned = self._real_count(opts, request.count) if source == REAL else request.count
            if planned == count:
                wanted["capture_all"] |= request.capture_all
                wanted["capture_mean_cov"] |= request.capture_mean_cov
        return tuple(sorted(wanted.items()))


def dataset_stats(opts: MetricOptions, detector: Detector, role: str, max_items: int | None,
                  **capture: Any) -> FeatureStats:
    """Real statistics through opts.shared when one call evaluates several metrics, else computed here."""
    if opts.shared is None:
        return compute_dataset_stats(opts, detector, max_items=max_items, **capture)
    return opts.shared.dataset_stats(opts, detector, role, max_items, **capture)


def generator_stats(opts: MetricOptions, detector: Detector, role: str, num_items: int,
                    **capture: Any) -> FeatureStats:
    if opts.shared is None:
        return compute_generator_stats(opts, detector, num_items, **capture)
    return opts.shared.generator_stats(opts, detector, role, num_items, **capture)

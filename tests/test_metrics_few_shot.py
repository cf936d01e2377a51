"""metrics.few_shot: FID + KID from one feature pass equal the fid<N>_full / kid<N>_full metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics import few_shot, metric_main
from metrics.features import Detector, MetricOptions
from metric_standins import ColourDetector, colour_detector, small_generator  # noqa: F401 (fixture)


def test_metric_names():
    assert few_shot.metric_names(50000) == ("fid50k_full", "kid50k_full")
    assert few_shot.metric_names(500) == ("fid500_full", "kid500_full")
    assert few_shot.metric_names(1500) == ("fid1500_full", "kid1500_full")
    for name in (*few_shot.metric_names(50000), *few_shot.metric_names(64)):
        assert metric_main.is_valid_metric(name)


def test_one_pass_equals_the_named_metrics(embedded_dataset_dir, colour_detector):
    kwargs = dict(path=str(embedded_dataset_dir), xflip=True)
    G = small_generator()
    np.random.seed(123)
    both = few_shot.calc_fid_kid(G, kwargs, num_gen=40, batch_size=32, progress=False)
    assert set(both.results) == {"fid40_full", "kid40_full"} and both.metric == "fid40_full,kid40_full"
    assert colour_detector.images_seen == 338 + 40  # the whole mirrored set once + one pass of exactly 40 fakes
    np.random.seed(123)
    fid = metric_main.calc_metric("fid40_full", G, kwargs, batch_size=32, progress=False)
    np.random.seed(123)
    kid = metric_main.calc_metric("kid40_full", G, kwargs, batch_size=32, progress=False)
    assert math.isfinite(both.results.fid40_full) and both.results.fid40_full > 0
    assert both.results.fid40_full == pytest.approx(fid.results.fid40_full, rel=1e-9)
    assert both.results.kid40_full == pytest.approx(kid.results.kid40_full, rel=1e-9, abs=1e-12)


def test_fixed_seed_is_reproducible_and_cached(embedded_dataset_dir, colour_detector):
    kwargs = dict(path=str(embedded_dataset_dir))
    G = small_generator()
    first = few_shot.calc_fid_kid(G, kwargs, num_gen=20, seed=7, batch_size=32, progress=False)
    seen = colour_detector.images_seen
    second = few_shot.calc_fid_kid(G, kwargs, num_gen=20, seed=7, batch_size=32, progress=False)
    assert colour_detector.images_seen - seen == 20  # real statistics came from the cache
    assert first.seed == second.seed == 7
    assert first.results.fid20_full == second.results.fid20_full
    with pytest.raises(ValueError):
        few_shot.calc_fid_kid(G, kwargs, num_gen=1, progress=False)


def test_the_harness_path_with_its_own_detector_scores_the_same_images(embedded_dataset_dir, colour_detector):
    """fid_kid_full (scripts/compare's evaluators) with a stand-in detector equals calc_fid_kid with that detector."""
    kwargs = dict(path=str(embedded_dataset_dir))
    G = small_generator()
    np.random.seed(5)
    named = few_shot.calc_fid_kid(G, kwargs, num_gen=20, seed=3, batch_size=32, progress=False)
    own = ColourDetector()
    np.random.seed(5)  # KID's subsets
    opts = MetricOptions(G=G, dataset_kwargs=kwargs, batch_size=32, progress=False)
    values = few_shot.fid_kid_full(opts, 20, seed=3, detector=Detector("toy-colour", own))
    assert own.images_seen == 20  # the real statistics of detector "toy-colour" came from the cache
    assert values == {"fid": named.results.fid20_full, "kid": named.results.kid20_full}

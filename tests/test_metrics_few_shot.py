"""metrics.few_shot: FID + KID from one feature pass equal the fid<N>_full / kid<N>_full metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import few_shot, metric_main, runners
from metrics.features import Detector
from training.networks import Generator


def small_generator(res: int = 64) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))


class CountingColourDetector:
    """Cheap stand-in for Inception: 4x4 average colours (48 features); counts the images it sees."""

    def __init__(self):
        self.images_seen = 0

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        self.images_seen += img.shape[0]
        return F.adaptive_avg_pool2d(img.float(), 4).flatten(1)


@pytest.fixture
def colour_detector(monkeypatch):
    detector = CountingColourDetector()
    monkeypatch.setattr(runners, "inception_features", lambda opts: Detector("toy-colour", detector))
    return detector


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

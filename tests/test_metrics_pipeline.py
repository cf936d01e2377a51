"""calc_metric end to end on the embedded emoji set: cache, sharding, result keys, real detector once."""

from __future__ import annotations

import glob
import os
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnnlib import util
from metrics import metric_main, runners
from metrics.features import Detector, MetricOptions, compute_dataset_stats, open_dataset
from metric_standins import ColourDetector, colour_detector, small_generator  # noqa: F401 (fixture)


def _reference_colour_features(folder: str) -> np.ndarray:
    ds = open_dataset(dict(path=folder))
    imgs = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))]))
    return F.adaptive_avg_pool2d(imgs.double(), 4).flatten(1).numpy()


def test_fid_pipeline_caches_real_statistics(embedded_dataset_dir, colour_detector):
    kwargs = dict(path=str(embedded_dataset_dir))
    first = metric_main.calc_metric("fid20_full", small_generator(), kwargs, batch_size=32, progress=False)
    assert list(first.results) == ["fid20_full"] and math.isfinite(first.results.fid20_full)
    assert first.results.fid20_full > 0 and first.num_gpus == 1 and first.total_time > 0
    assert colour_detector.images_seen == 169 + 20  # whole dataset + exactly the 20 fakes (the last batch shrinks)

    caches = glob.glob(util.make_cache_dir_path("gan-metrics", "emoji-smileys-toy-colour-*.npz"))
    assert len(caches) == 1
    with np.load(caches[0]) as data:
        reference = _reference_colour_features(str(embedded_dataset_dir))
        np.testing.assert_allclose(data["raw_mean"] / int(data["num_items"]), reference.mean(0), rtol=1e-6)
        assert int(data["num_items"]) == 169

    colour_detector.images_seen = 0
    metric_main.calc_metric("fid20_full", small_generator(), kwargs, batch_size=32, progress=False)
    assert colour_detector.images_seen == 20  # cache hit: only the 20 generated images are run

    metric_main.calc_metric("fid20_full", small_generator(), dict(kwargs, xflip=True), batch_size=64, progress=False)
    assert colour_detector.images_seen == 20 + 338 + 20  # other options, other cache entry (x-flips double the set)


def test_the_real_set_cache_ignores_how_the_path_is_typed_and_kid_reuses_a_shared_pass(
        embedded_dataset_dir, colour_detector, monkeypatch, capsys):
    monkeypatch.chdir(embedded_dataset_dir.parent)
    relative = dict(path=embedded_dataset_dir.name)
    list(metric_main.calc_metrics(["fid20_full", "kid20_full"], small_generator(), relative, batch_size=32,
                                  progress=False))
    assert colour_detector.images_seen == 169 + 20  # one shared pass of each
    colour_detector.images_seen = 0
    absolute = dict(path=str(embedded_dataset_dir) + "/")  # absolute, and a trailing slash
    metric_main.calc_metric("kid20_full", small_generator(), absolute, batch_size=32, progress=False)
    assert colour_detector.images_seen == 20  # the reals came from the fid+kid pass's cache
    metric_main.calc_metric("fid20_full", small_generator(), relative, batch_size=32, progress=True)
    assert colour_detector.images_seen == 40
    assert "FID: square root of the 48x48 covariance product" in capsys.readouterr().out  # no silent step
    assert len(glob.glob(util.make_cache_dir_path("gan-metrics", "emoji-smileys-toy-colour-*.npz"))) == 1


def test_cache_disabled_writes_nothing(embedded_dataset_dir, colour_detector):
    before = set(glob.glob(util.make_cache_dir_path("gan-metrics", "*")))
    metric_main.calc_metric("kid10", small_generator(), dict(path=str(embedded_dataset_dir)), batch_size=16,
                            progress=False, cache=False)
    assert set(glob.glob(util.make_cache_dir_path("gan-metrics", "*"))) == before


def test_kid_and_pr_results_have_upstream_keys(embedded_dataset_dir, colour_detector):
    kwargs = dict(path=str(embedded_dataset_dir))
    kid = metric_main.calc_metric("kid16", small_generator(), kwargs, batch_size=16, progress=False)
    assert list(kid.results) == ["kid16"] and math.isfinite(kid.results.kid16)
    opts = MetricOptions(G=small_generator(), dataset_kwargs=kwargs, batch_size=16, progress=False)
    pr = runners.precision_and_recall(opts, max_real=40, num_gen=16, nhood_size=3)
    assert set(pr) == {"_precision", "_recall"} and all(0 <= v <= 1 for v in pr.values())


def test_dataset_sharding_covers_every_item_once(embedded_dataset_dir):
    detector = Detector("toy-colour", ColourDetector())
    kwargs = dict(path=str(embedded_dataset_dir))
    shards = [compute_dataset_stats(MetricOptions(dataset_kwargs=kwargs, num_gpus=2, rank=r, batch_size=20,
                                                  progress=False, cache=False), detector, max_items=51,
                                    capture_all=True).get_all() for r in (0, 1)]
    assert [len(s) for s in shards] == [26, 26]  # 51 items: ranks pad the last round with a wrapped index
    reference = _reference_colour_features(str(embedded_dataset_dir))
    np.testing.assert_allclose(shards[0], reference[0:52:2], rtol=1e-6)
    np.testing.assert_allclose(shards[1][:25], reference[1:51:2], rtol=1e-6)


def test_inception_score_and_ppl_runners(embedded_dataset_dir, monkeypatch):
    probs = Detector("toy-probs", lambda img: F.softmax(F.adaptive_avg_pool2d(img.float(), 2).flatten(1) / 50, 1))
    opts = MetricOptions(G=small_generator(), dataset_kwargs=dict(path=str(embedded_dataset_dir)), batch_size=10,
                         progress=False)
    score = runners.inception_score_metric(opts, num_gen=20, detector=probs)
    assert score["_mean"] >= 1.0 and score["_std"] >= 0

    def distance(a, b):
        return (a - b).square().mean((1, 2, 3))

    value = runners.ppl(opts, num_samples=6, space="w", sampling="end", crop=True, distance=distance)[""]
    assert math.isfinite(value) and value > 0


def test_kid_with_real_inception_detector(embedded_dataset_dir):
    # KID rather than FID: a 2048x2048 sqrtm costs minutes on a busy 2-core CPU, the formula is tested elsewhere.
    if not runners.detectors.have_offline_weights("inception"):
        pytest.skip("no offline Inception weights (python scripts/fetch_weights.py)")
    kwargs = dict(path=str(embedded_dataset_dir))
    result = metric_main.calc_metric("kid8", small_generator(), kwargs, batch_size=8, progress=False)
    assert result.results.kid8 > 0.05  # untrained G vs emoji: clearly apart in Inception space
    stem = os.path.splitext(os.path.basename(runners.detectors.inception_source()))[0]
    assert glob.glob(util.make_cache_dir_path("gan-metrics", f"emoji-smileys-inception-{stem}-features-*.npz"))

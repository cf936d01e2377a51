"""Metric formulas against closed forms and brute-force references (no detectors, no networks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from metrics.feature_stats import FeatureStats
from metrics.frechet_distance import frechet_distance
from metrics.inception_score import inception_score
from metrics.kernel_inception_distance import kernel_inception_distance
from metrics.perceptual_path_length import PathLengthSampler, crop_and_scale, slerp, trimmed_mean
from metrics.precision_recall import precision_recall
from metrics import metric_main


# ---------------------------------------------------------------------------- FID

def _gaussian_stats(rng, n, d, shift=0.0):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + shift
    return x, x.mean(0), np.cov(x, rowvar=False, bias=True)


def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.RandomState(0)
    _, mu, sigma = _gaussian_stats(rng, 400, 24)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_fid_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_fid_matches_symmetric_root_formula_for_full_covariances():
    rng = np.random.RandomState(1)
    _, mu1, s1 = _gaussian_stats(rng, 300, 10)
    _, mu2, s2 = _gaussian_stats(rng, 300, 10, shift=0.5)
    # Independent route: Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2), both roots via eigh.
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_feature_stats_mean_cov_and_truncation(tmp_path):
    rng = np.random.RandomState(2)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    stats = FeatureStats(capture_all=True, capture_mean_cov=True, max_items=40)
    for chunk in np.array_split(x, 7):
        stats.append(chunk)
    assert stats.num_items == 40 and stats.is_full()
    mean, cov = stats.get_mean_cov()
    np.testing.assert_allclose(mean, x[:40].astype(np.float64).mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x[:40].astype(np.float64), rowvar=False, bias=True), atol=1e-10)
    stats.save(str(tmp_path / "s.npz"))
    loaded = FeatureStats.load(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.get_all(), x[:40])
    np.testing.assert_allclose(loaded.get_mean_cov()[1], cov)


# ---------------------------------------------------------------------------- KID

def _kid_brute_force(x, y):
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_single_full_subset_matches_unbiased_mmd():
    rng = np.random.RandomState(3)
    real = rng.standard_normal((30, 5))
    gen = rng.standard_normal((30, 5)) + 0.3
    # One subset of all items: only the order is random, and MMD^2 does not depend on it.
    kid = kernel_inception_distance(real, gen, num_subsets=1, max_subset_size=30, rng=np.random.RandomState(0))
    assert kid == pytest.approx(_kid_brute_force(gen, real), rel=1e-9)


def test_kid_near_zero_for_identical_sets_and_positive_when_shifted():
    rng = np.random.RandomState(4)
    real = rng.standard_normal((200, 16))
    same = kernel_inception_distance(real, real.copy(), num_subsets=10, max_subset_size=200, rng=rng)
    shifted = kernel_inception_distance(real, real + 1.0, num_subsets=10, max_subset_size=200, rng=rng)
    independent = kernel_inception_distance(real, rng.standard_normal((200, 16)), 10, 200, rng=rng)
    assert shifted > 1.0
    assert abs(same) < 0.01 * shifted and abs(independent) < 0.01 * shifted


# ---------------------------------------------------------------------------- Precision / recall

def _pr_brute_force(real, gen, k):
    def radii(m):
        d = np.linalg.norm(m[:, None] - m[None], axis=2)
        return np.sort(d, axis=1)[:, k]

    def inside(manifold, probes):
        d = np.linalg.norm(probes[:, None] - manifold[None], axis=2)
        return np.mean((d <= radii(manifold)[None]).any(axis=1))

    return inside(real, gen), inside(gen, real)


def test_precision_recall_on_synthetic_clusters():
    real = np.stack([np.arange(40.0), np.zeros(40)], axis=1)
    gen = np.concatenate([real[:20], real[:20] + [1000.0, 0.0]])
    p, r = precision_recall(torch.tensor(real), torch.tensor(gen), nhood_size=3, row_batch_size=7, col_batch_size=9)
    assert p == pytest.approx(0.5)  # copies are inside the real manifold, the far cluster is not
    assert r == pytest.approx(23 / 40)  # the 20 copies plus reals 20, 21, 22 (within radius 3 of gen point 19)


def test_precision_recall_batched_matches_brute_force():
    rng = np.random.RandomState(5)
    real = rng.standard_normal((60, 8)).astype(np.float32)
    gen = (rng.standard_normal((50, 8)) * 1.5 + 0.5).astype(np.float32)
    got = precision_recall(torch.tensor(real), torch.tensor(gen), nhood_size=3, row_batch_size=11, col_batch_size=13)
    np.testing.assert_allclose(got, _pr_brute_force(real, gen, 3), atol=1e-9)


# ---------------------------------------------------------------------------- IS

def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    probs = np.eye(5)[np.arange(100) % 5]
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-12)
    assert inception_score(np.full((100, 7), 1 / 7), 10)[0] == pytest.approx(1.0)


def test_inception_score_matches_entropy_reference():
    rng = np.random.RandomState(6)
    logits = rng.standard_normal((103, 12)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(10):
        part = probs[i * 103 // 10: (i + 1) * 103 // 10]
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(p, py) for p in part])))
    mean, std = inception_score(probs, 10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)


# ---------------------------------------------------------------------------- PPL

class LinearG(torch.nn.Module):
    """Stand-in generator: w = z @ M (broadcast to num_ws), image = tanh-free linear map of mean w."""

    def __init__(self, z_dim=6, num_ws=3, res=16, channels=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.z_dim, self.c_dim, self.num_ws, self.res, self.channels = z_dim, 0, num_ws, res, channels
        self.M = torch.randn(z_dim, z_dim, generator=g, dtype=torch.float64)
        self.A = torch.randn(z_dim, channels * res * res, generator=g, dtype=torch.float64) * 0.01

    def mapping(self, z, c, **_):
        return (z.double() @ self.M).unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="random", force_fp32=False):
        assert noise_mode == "const" and force_fp32
        return (ws.mean(1) @ self.A).reshape(-1, self.channels, self.res, self.res)


def _sq_distance(a, b):
    return (a - b).square().flatten(1).sum(1)


def test_ppl_w_end_matches_closed_form_for_linear_generator():
    G = LinearG()
    sampler = PathLengthSampler(G, _sq_distance, epsilon=1e-4, space="w", sampling="end", crop=False)
    gen = torch.Generator().manual_seed(1)
    d = sampler(torch.zeros(4, 0), gen)
    gen2 = torch.Generator().manual_seed(1)
    torch.rand([4, 1], generator=gen2)  # the sampler draws t first, then the latent pairs
    z0, z1 = torch.randn([8, G.z_dim], generator=gen2).chunk(2)
    step = ((z1.double() - z0.double()) @ G.M) @ G.A * 127.5  # image difference per unit t, in uint8 units
    np.testing.assert_allclose(d.numpy(), step.square().sum(1).numpy(), rtol=1e-6)


def test_ppl_z_space_uses_slerp_and_random_distance_net_is_finite_and_positive():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3)).double()

    def distance(a, b):
        return (net(a / 255) - net(b / 255)).square().mean((1, 2, 3))

    for space, sampling in (("z", "full"), ("z", "end"), ("w", "full")):
        sampler = PathLengthSampler(LinearG(), distance, 1e-4, space, sampling, crop=True)
        d = sampler(torch.zeros(5, 0), torch.Generator().manual_seed(2))
        assert d.shape == (5,) and torch.isfinite(d).all() and (d > 0).all()


def test_slerp_endpoints_and_unit_norm():
    a, b = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, torch.zeros(4, 1)), a / a.norm(dim=1, keepdim=True))
    torch.testing.assert_close(slerp(a, b, torch.ones(4, 1)), b / b.norm(dim=1, keepdim=True))
    mid = slerp(a, b, torch.full((4, 1), 0.3))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_crop_and_scale_region_and_downsampling():
    img = torch.arange(512 * 512, dtype=torch.float64).reshape(1, 1, 512, 512) / (512 * 512) * 2 - 1
    out = crop_and_scale(img, crop=True)
    assert out.shape == (1, 3, 128, 128)  # crop 256x256 of 512, then /2
    expected = (torch.nn.functional.avg_pool2d(img[:, :, 192:448, 128:384], 2) + 1) * 127.5
    torch.testing.assert_close(out[:, :1], expected)


def test_trimmed_mean_drops_outer_percentiles():
    rng = np.random.RandomState(7)
    values = np.concatenate([rng.standard_normal(990), np.full(5, 1e6), np.full(5, -1e6)])
    ordered = np.sort(values)
    n = len(values)  # 'lower' 1st percentile and 'higher' 99th percentile are order statistics
    kept = ordered[int(np.floor(0.01 * (n - 1))): int(np.ceil(0.99 * (n - 1))) + 1]
    assert trimmed_mean(values) == pytest.approx(kept.mean())
    assert abs(trimmed_mean(values)) < 1


# ---------------------------------------------------------------------------- Registry and reporting

@pytest.mark.parametrize("name", metric_main.UPSTREAM_METRICS + ("fid5k_full", "kid1k_full", "pr5k3", "is10k", "fid500"))
def test_valid_metric_names(name):
    assert metric_main.is_valid_metric(name)


@pytest.mark.parametrize("name", ["fid", "fid50x", "pr50k", "kid1", "is5", "ppl_x", "", "FID50k"])
def test_invalid_metric_names(name):
    assert not metric_main.is_valid_metric(name)
    with pytest.raises(ValueError, match="--metrics: unknown metric"):
        metric_main.calc_metric(name, G=None, dataset_kwargs={})


def test_report_metric_writes_upstream_json_line(tmp_path):
    result = {"results": {"fid5k_full": 12.5}, "metric": "fid5k_full", "total_time": 3.2,
              "total_time_str": "3s", "num_gpus": 1}
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / "network-snapshot-000000.pkl"))
    lines = (tmp_path / "metric-fid5k_full.jsonl").read_text().splitlines()
    assert len(lines) == 2
    row = json.loads(lines[0])
    assert list(row) == ["results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"]
    assert row["results"] == {"fid5k_full": 12.5} and row["snapshot_pkl"] == "network-snapshot-000000.pkl"

"""InfoNCE, forgetting factor and 2C against independent float64 computations of the equations."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.contrastive.losses import (contrastive_2c_loss, forgetting_margin, forgetting_weights, info_nce,
                                         same_label_matrix)


def _unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ref_info_nce(q, kp, neg, tau, margin, mask):
    """Paper eqs. 5 / 10 written out literally in float64 (exp, sum, log)."""
    out = []
    for i in range(q.shape[0]):
        pos = math.exp(q[i] @ kp[i] / tau)
        negs = sum(math.exp((q[i] @ neg[j] + margin[j]) / tau) for j in range(neg.shape[0]) if mask[j])
        out.append(-math.log(pos / (pos + negs)))
    return np.array(out)


def _ref_forgetting(stamps, mask, tau_m):
    t = np.asarray(stamps, dtype=np.float64)[mask]
    t_hat = np.ones_like(t) if t.max() == t.min() else (t - t.min()) / (t.max() - t.min())
    e = np.exp((t_hat - t_hat.max()) / tau_m)
    out = np.zeros(len(stamps))
    out[np.asarray(mask)] = e / e.sum()
    return out


@pytest.mark.parametrize("with_margin", [False, True])
def test_info_nce_matches_float64_reference(with_margin):
    rng = np.random.default_rng(0)
    q, kp, neg = _unit(rng, 6, 16), _unit(rng, 6, 16), _unit(rng, 10, 16)
    mask = np.array([True] * 7 + [False] * 3)
    margin = rng.uniform(0, 1, 10) if with_margin else np.zeros(10)
    got = info_nce(torch.tensor(q, dtype=torch.float32), torch.tensor(kp, dtype=torch.float32),
                   torch.tensor(neg, dtype=torch.float32), tau=0.2, negative_mask=torch.tensor(mask),
                   negative_margin=torch.tensor(margin, dtype=torch.float32) if with_margin else None)
    want = _ref_info_nce(q, kp, neg, 0.2, margin, mask)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6)


def test_info_nce_in_float64_is_exact_to_1e_12():
    rng = np.random.default_rng(1)
    q, kp, neg = _unit(rng, 5, 8), _unit(rng, 5, 8), _unit(rng, 12, 8)
    got = info_nce(torch.tensor(q), torch.tensor(kp), torch.tensor(neg), tau=0.2)
    np.testing.assert_allclose(got.numpy(), _ref_info_nce(q, kp, neg, 0.2, np.zeros(12), [True] * 12), rtol=1e-12)


def test_info_nce_with_empty_queue_is_zero_and_has_zero_grad():
    q = F.normalize(torch.randn(3, 4), dim=1).requires_grad_(True)
    loss = info_nce(q, F.normalize(torch.randn(3, 4), dim=1), torch.randn(5, 4), 0.2,
                    negative_mask=torch.zeros(5, dtype=torch.bool))
    loss.sum().backward()
    assert torch.equal(loss, torch.zeros(3))
    assert torch.isfinite(q.grad).all()


def test_code_constant_margin_multiplies_negatives_by_e_to_1_over_tau():
    rng = np.random.default_rng(2)
    q, kp, neg = (torch.tensor(_unit(rng, n, 8)) for n in (4, 4, 6))
    mask = torch.ones(6, dtype=torch.bool)
    got = info_nce(q, kp, neg, 0.2, mask, forgetting_margin("code_constant", torch.arange(6), mask))
    pos = torch.exp((q * kp).sum(1) / 0.2)
    negs = torch.exp(q @ neg.t() / 0.2).sum(1) * math.exp(1 / 0.2)
    torch.testing.assert_close(got, -torch.log(pos / (pos + negs)), rtol=1e-10, atol=0)


def test_forgetting_weights_match_paper_formula():
    stamps = torch.tensor([3, 10, 7, 7, 1, 12, 0, 5])
    mask = torch.tensor([True, True, True, True, True, True, False, False])
    for tau_m in (0.01, 0.1, 1.0):
        got = forgetting_weights(stamps, mask, tau_m)
        np.testing.assert_allclose(got.double().numpy(), _ref_forgetting(stamps.numpy(), mask.numpy(), tau_m),
                                   rtol=1e-6, atol=1e-30)
    got = forgetting_weights(stamps, mask, 0.1)
    assert got.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert got[6] == 0 and got[7] == 0  # inactive entries take no part
    order = torch.argsort(stamps[:6])
    assert torch.all(got[:6][order].diff() >= 0)  # older keys get smaller weights
    assert got[4] < got[0] < got[2] < got[1] < got[5]


def test_forgetting_weights_are_finite_in_corner_cases():
    equal = forgetting_weights(torch.zeros(5, dtype=torch.int64), None, 0.001)
    torch.testing.assert_close(equal, torch.full((5,), 0.2))
    empty = forgetting_weights(torch.tensor([4, 2, 9]), torch.zeros(3, dtype=torch.bool), 0.01)
    assert torch.equal(empty, torch.zeros(3))
    partial = forgetting_weights(torch.tensor([2, 0, 0, 0]), torch.tensor([True, False, False, False]), 0.01)
    assert torch.equal(partial, torch.tensor([1.0, 0, 0, 0]))
    huge = forgetting_weights(torch.tensor([0, 10**9, 10**9 - 1]), None, 0.001)
    assert torch.isfinite(huge).all() and huge[0] == 0  # the oldest key's e^{-1000} underflows to 0
    assert huge[1].item() == pytest.approx(0.5, abs=1e-5) and huge.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_forgetting_margin_modes():
    stamps, mask = torch.tensor([0, 1]), torch.tensor([True, False])
    assert forgetting_margin("off", stamps, mask) is None
    assert torch.equal(forgetting_margin("code_constant", stamps, mask), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="forgetting_mode"):
        forgetting_margin("bogus", stamps, mask)


def _ref_2c(e, p, y, tau):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    out = []
    for i in range(len(y)):
        proxy = math.exp(e[i] @ p[i] / tau)
        num = proxy + sum(math.exp(e[i] @ e[j] / tau) for j in range(len(y)) if j != i and y[j] == y[i])
        den = proxy + sum(math.exp(e[i] @ e[j] / tau) for j in range(len(y)) if j != i)
        out.append(-math.log(num / den))
    return np.array(out)


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_2c_matches_float64_reference(tau):
    rng = np.random.default_rng(3)
    e, p = rng.standard_normal((9, 12)), rng.standard_normal((9, 12))
    y = rng.integers(0, 3, 9)
    got = contrastive_2c_loss(torch.tensor(e, dtype=torch.float32), torch.tensor(p, dtype=torch.float32),
                              torch.tensor(y), tau)
    np.testing.assert_allclose(got.double().numpy(), _ref_2c(e, p, y, tau), rtol=1e-6)
    onehot = F.one_hot(torch.tensor(y), 3).float()  # label vectors give the same loss as class ids
    got_onehot = contrastive_2c_loss(torch.tensor(e, dtype=torch.float32), torch.tensor(p, dtype=torch.float32), onehot, tau)
    torch.testing.assert_close(got_onehot, got)


def test_2c_gradients_reach_embeddings_and_proxies():
    e = torch.randn(6, 8, requires_grad=True)
    p = torch.randn(6, 8, requires_grad=True)
    contrastive_2c_loss(e, p, torch.tensor([0, 0, 1, 1, 2, 2])).mean().backward()
    assert e.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_same_label_matrix():
    m = same_label_matrix(torch.tensor([[1.0, 0], [0, 1], [1, 0]]))
    assert m.tolist() == [[True, False, True], [False, True, False], [True, False, True]]

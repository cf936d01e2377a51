"""Latent perturbation statistics (10k samples) and the exact per-coordinate formula."""

import math

import pytest
import torch

from training.contrastive.noise import latent_noise_std, perturb_latents

HALF_NORMAL_MEAN = math.sqrt(2 / math.pi)  # E|eta| for eta ~ N(0, 1)


def _ratio_stats(mode, scale, clamp):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10_000, 8, generator=g, dtype=torch.float64)
    eps = perturb_latents(z, mode, scale, clamp, generator=g) - z
    return z, eps


def test_relative_noise_paper_literal_mean_ratio():
    z, eps = _ratio_stats("relative", 0.1, None)
    ratio = (eps.abs() / z.abs()).mean().item()
    assert ratio == pytest.approx(0.1 * HALF_NORMAL_MEAN, rel=0.02)


def test_relative_noise_with_clamp_mean_ratio():
    z, eps = _ratio_stats("relative", 0.1, 1.0)  # clamp 1 so that many coordinates are clamped
    expected = 0.1 * HALF_NORMAL_MEAN * (z.abs().clamp(max=1.0) / z.abs()).mean().item()
    ratio = (eps.abs() / z.abs()).mean().item()
    assert ratio == pytest.approx(expected, rel=0.02)
    assert expected < 0.1 * HALF_NORMAL_MEAN * 0.95  # the clamp really changes the statistic


def test_fixed_noise_scale():
    _, eps = _ratio_stats("fixed", 0.15, None)
    assert eps.abs().mean().item() == pytest.approx(0.15 * HALF_NORMAL_MEAN, rel=0.02)
    assert eps.std().item() == pytest.approx(0.15, rel=0.02)


def test_exact_formula_per_coordinate():
    z = torch.tensor([[-5.0, -1.0, 0.0, 0.5, 4.0]])
    torch.testing.assert_close(latent_noise_std(z, "relative", 0.1, 3.0), torch.tensor([[0.3, 0.1, 0.0, 0.05, 0.3]]))
    torch.testing.assert_close(latent_noise_std(z, "relative", 0.1, None), torch.tensor([[0.5, 0.1, 0.0, 0.05, 0.4]]))
    torch.testing.assert_close(latent_noise_std(z, "fixed", 0.15, 3.0), torch.full((1, 5), 0.15))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    eta = torch.randn(z.shape, generator=g2)
    torch.testing.assert_close(perturb_latents(z, "relative", 0.1, 3.0, generator=g1),
                               z + eta * 0.1 * z.abs().clamp(max=3.0))


def test_unknown_mode():
    with pytest.raises(ValueError, match="noise_mode"):
        latent_noise_std(torch.zeros(1, 2), "gaussian")

"""Latent perturbation that forms the positive pair of a fake sample (FakeCLR / InsGen).

FakeCLR's "noise-related latent augmentation" scales the noise with the latent's own
magnitude: coordinates far from the origin (low-density regions of N(0, I)) get a stronger
"nearby latents give similar images" prior. InsGen uses a fixed scale instead.

    relative: delta_j ~ N(0, (scale * min(|z_j|, clamp))^2)   (clamp=None: paper-literal, no clamp)
    fixed:    delta_j ~ N(0, scale^2)
"""

from __future__ import annotations

from typing import Optional

import torch

NOISE_MODES = ("relative", "fixed")


def latent_noise_std(z: torch.Tensor, mode: str = "relative", scale: float = 0.1,
                     clamp: Optional[float] = 3.0) -> torch.Tensor:
    """Per-coordinate standard deviation of the perturbation for latents `z`."""
    if mode == "relative":
        magnitude = z.abs() if clamp is None else z.abs().clamp(max=clamp)
        return magnitude * scale
    if mode == "fixed":
        return torch.full_like(z, scale)
    raise ValueError(f"latent noise: unknown noise_mode {mode!r}; use one of {', '.join(NOISE_MODES)}")


def perturb_latents(z: torch.Tensor, mode: str = "relative", scale: float = 0.1,
                    clamp: Optional[float] = 3.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Return z + delta with delta drawn per `latent_noise_std` (no gradient is needed through it)."""
    std = latent_noise_std(z, mode, scale, clamp)
    eta = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
    return z + eta * std

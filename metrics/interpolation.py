"""Interpolation smoothness (FakeCLR Fig. 1): how much the image changes between consecutive interpolation frames.

For M latent pairs, K steps give K + 1 frames at t = 0, 1/K, ..., 1: in Z by spherical interpolation (then the
mapping), in W by linear interpolation of the two mapped w. Per step the score is the mean absolute pixel
difference of consecutive frames, pixels in [0, 1]; a step above the threshold (the paper's 0.2) is a "jump":
the image changes abruptly instead of morphing, a sign of a discontinuous latent space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metrics.perceptual_path_length import slerp

JUMP_THRESHOLD = 0.2
SPACES = ("z", "w")


@dataclass
class Smoothness:
    """Per-step differences [M, K] of one space and their summary."""

    diffs: np.ndarray
    threshold: float = JUMP_THRESHOLD

    def summary(self) -> dict:
        return {
            "mean": float(self.diffs.mean()),
            "max": float(self.diffs.max()),
            "jump_fraction": float((self.diffs > self.threshold).mean()),
            "jumps": int((self.diffs > self.threshold).sum()),
            "steps": int(self.diffs.size),
        }


def latent_pairs(z_dim: int, num_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two [M, z_dim] batches of z ~ N(0, I); the same seed gives every network the same latents."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(2 * num_pairs, z_dim)).float()
    return z[:num_pairs], z[num_pairs:]


def interpolation_ws(G: Any, z0: torch.Tensor, z1: torch.Tensor, num_steps: int, space: str) -> torch.Tensor:
    """ws [M, K + 1, num_ws, w_dim] along the paths from z0 to z1 (slerp in Z, lerp in W)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    m, frames = z0.shape[0], num_steps + 1
    t = torch.linspace(0, 1, frames, device=z0.device)
    with torch.no_grad():
        if space == "z":
            zt = slerp(z0.repeat_interleave(frames, 0), z1.repeat_interleave(frames, 0), t.repeat(m)[:, None])
            ws = G.mapping(zt, None)
        else:
            w0, w1 = G.mapping(torch.cat([z0, z1]), None).chunk(2)
            ws = w0[:, None] + (w1 - w0)[:, None] * t[None, :, None, None]
    return ws.reshape(m, frames, *ws.shape[-2:])


def synthesize_frames(G: Any, ws: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """ws [F, num_ws, w_dim] -> frames [F, C, H, W] in [0, 1] (constant noise: only the latent changes)."""
    frames = []
    for start in range(0, ws.shape[0], batch):
        with torch.no_grad():
            img = G.synthesis(ws[start: start + batch], noise_mode="const", force_fp32=True)
        frames.append(((img.float().clamp(-1, 1) + 1) / 2).cpu())
    return torch.cat(frames)


def step_differences(frames: torch.Tensor) -> np.ndarray:
    """[F, C, H, W] -> [F - 1]: mean |frame[i + 1] - frame[i]| per step."""
    return (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3)).double().numpy()


def measure_smoothness(G: Any, z0: torch.Tensor, z1: torch.Tensor, num_steps: int, space: str,
                       threshold: float = JUMP_THRESHOLD) -> tuple[Smoothness, torch.Tensor]:
    """The smoothness of one space over all pairs, and the first pair's frames [K + 1, C, H, W] (the figure)."""
    paths = interpolation_ws(G, z0, z1, num_steps, space)
    diffs, first = [], None
    for ws in paths:  # one pair at a time: only one path of frames is held in memory
        frames = synthesize_frames(G, ws)
        first = frames if first is None else first
        diffs.append(step_differences(frames))
    return Smoothness(np.stack(diffs), threshold), first

"""Pictures of a benchmark: a sample grid and latent interpolation strips per method, from the SAME latents.

Same latents for every method (drawn from a fixed numpy seed), constant noise, no truncation, so that
a difference between two pictures is a difference between the generators. Interpolation: spherical
(slerp) between two Gaussian latents, the path the perceptual-path-length metric in z follows; a
generator with a continuous latent space changes gradually along a strip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnlib.util import atomic_write

GRID_SHAPE = (4, 8)  # rows, columns of the sample grid
STRIP_PAIRS = 8
STRIP_STEPS = 8


def grid_latents(z_dim: int, seed: int = 0) -> np.ndarray:
    rows, cols = GRID_SHAPE
    return np.random.RandomState(seed).randn(rows * cols, z_dim)


def strip_latents(z_dim: int, seed: int = 1) -> np.ndarray:
    """[pairs, steps, z_dim]: slerp from the first to the second latent of each pair."""
    rng = np.random.RandomState(seed)
    a, b = rng.randn(STRIP_PAIRS, z_dim), rng.randn(STRIP_PAIRS, z_dim)
    steps = np.linspace(0.0, 1.0, STRIP_STEPS)
    return np.stack([slerp(a[i], b[i], steps) for i in range(STRIP_PAIRS)])


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of the directions, linear interpolation of the lengths."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(np.dot(ua, ub), -1.0, 1.0))
    if omega < 1e-6:
        directions = np.outer(1 - t, ua) + np.outer(t, ub)
    else:
        directions = (np.outer(np.sin((1 - t) * omega), ua) + np.outer(np.sin(t * omega), ub)) / np.sin(omega)
    return directions * ((1 - t) * na + t * nb)[:, None]


def synthesize(G: Any, z: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 [N, H, W, C] images of G for the latents z (CPU, constant noise, psi 1)."""
    import torch

    out = []
    for start in range(0, len(z), batch):
        chunk = torch.from_numpy(z[start:start + batch]).float()
        label = torch.zeros([len(chunk), G.c_dim])
        with torch.no_grad():
            img = G(chunk, label, truncation_psi=1, noise_mode="const")
        out.append((img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[rows*cols, H, W, C] -> [rows*H, cols*W, C], row-major."""
    n, h, w, c = images.shape
    assert n == rows * cols, (n, rows, cols)
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def save_png(array: np.ndarray, path: str) -> None:
    from PIL import Image

    image = Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")
    with atomic_write(path, "wb") as f:
        image.save(f, format="PNG")


def write_pictures(G: Any, grid_path: str, strip_path: str) -> None:
    """The sample grid (GRID_SHAPE) and the interpolation strips (STRIP_PAIRS rows x STRIP_STEPS columns)."""
    rows, cols = GRID_SHAPE
    save_png(tile(synthesize(G, grid_latents(G.z_dim)), rows, cols), grid_path)
    z = strip_latents(G.z_dim).reshape(STRIP_PAIRS * STRIP_STEPS, G.z_dim)
    save_png(tile(synthesize(G, z), STRIP_PAIRS, STRIP_STEPS), strip_path)

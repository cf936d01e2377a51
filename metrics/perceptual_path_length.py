"""Perceptual path length: LPIPS between images at t and t + epsilon along a latent path, divided by epsilon^2.

Z space interpolates spherically between two normalised z, W space linearly between their mapped w. 'full'
samples t ~ U[0, 1), 'end' uses t = 0. Synthesis runs with constant noise and forced FP32 so that only the
latent step changes the image. Optional face-centred crop, down-scaling to 256 px, then 1%/99% outlier
trimming of the per-sample distances before averaging.
"""

from __future__ import annotations

import sys

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from metrics.features import LabelSampler, MetricOptions, _gather, open_dataset
from dnnlib.progress import ProgressBar

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # two uint8-range batches -> [N]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b; t has shape [N, 1]."""
    a, b = _normalize(a), _normalize(b)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos.clamp(-1, 1))
    ortho = _normalize(b - cos * a)
    return _normalize(a * torch.cos(angle) + ortho * torch.sin(angle))


def crop_and_scale(img: torch.Tensor, crop: bool) -> torch.Tensor:
    """[-1, 1] images -> face crop (optional), pooled by resolution / 256 when above 256 px, uint8 range, RGB."""
    factor = img.shape[2] // 256  # from the generator's resolution, before cropping (as upstream)
    if crop:
        if img.shape[2] != img.shape[3]:
            raise ValueError(f"PPL crop needs square images, got {img.shape[2]}x{img.shape[3]}")
        c = img.shape[2] // 8
        img = img[:, :, c * 3: c * 7, c * 2: c * 6]
    if factor > 1:
        img = F.avg_pool2d(img, factor)
    img = (img + 1) * (255 / 2)
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


class PathLengthSampler:
    """Draws latent pairs and returns per-sample LPIPS(t, t + eps) / eps^2."""

    def __init__(self, G: Any, distance: Distance, epsilon: float, space: str, sampling: str, crop: bool):
        if space not in ("z", "w") or sampling not in ("full", "end"):
            raise ValueError(f"PPL: space must be z|w and sampling full|end, got {space!r}/{sampling!r}")
        self.G, self.distance = G, distance
        self.epsilon, self.space, self.sampling, self.crop = epsilon, space, sampling, crop

    def __call__(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, device = c.shape[0], c.device
        t = torch.rand([n, 1], device=device, generator=generator) * (self.sampling == "full")
        z0, z1 = torch.randn([n * 2, self.G.z_dim], device=device, generator=generator).chunk(2)
        if self.space == "w":
            w0, w1 = self.G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
            t = t.unsqueeze(2).to(w0.dtype)
            wt0 = w0 + (w1 - w0) * t
            wt1 = w0 + (w1 - w0) * (t + self.epsilon)
        else:
            zt = torch.cat([slerp(z0, z1, t), slerp(z0, z1, t + self.epsilon)])
            wt0, wt1 = self.G.mapping(z=zt, c=torch.cat([c, c])).chunk(2)
        ws = torch.stack([wt0, wt1], dim=1).flatten(0, 1)  # pairs side by side: same noise, same crop
        img = crop_and_scale(self.G.synthesis(ws, noise_mode="const", force_fp32=True), self.crop)
        return self.distance(img[0::2], img[1::2]) / self.epsilon ** 2


def trimmed(dist: np.ndarray) -> np.ndarray:
    """The distances between the 1st ('lower') and 99th ('higher') percentiles, as upstream keeps them."""
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return np.extract(np.logical_and(dist >= lo, dist <= hi), dist)


def trimmed_mean(dist: np.ndarray) -> float:
    return float(trimmed(dist).mean())


def trimmed_mean_std(dist: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of the trimmed distances: PPL "mean ± std" (FakeCLR Table 2)."""
    kept = trimmed(dist)
    return float(kept.mean()), float(kept.std())


def compute_ppl(opts: MetricOptions, distance: Distance, num_samples: int, epsilon: float, space: str,
                sampling: str, crop: bool, batch_size: int = 16, seed: int | None = None) -> float:
    dists = compute_ppl_distances(opts, distance, num_samples, epsilon, space, sampling, crop, batch_size, seed)
    return trimmed_mean(dists)


def compute_ppl_distances(opts: MetricOptions, distance: Distance, num_samples: int, epsilon: float, space: str,
                          sampling: str, crop: bool, batch_size: int = 16, seed: int | None = None) -> np.ndarray:
    """The num_samples per-sample path lengths (untrimmed), gathered from all ranks."""
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    sampler = PathLengthSampler(G, distance, epsilon, space, sampling, crop)
    seed = int(np.random.randint(1 << 31)) if seed is None else seed
    generator = torch.Generator(device=opts.device).manual_seed(seed * opts.num_gpus + opts.rank)
    labels = LabelSampler(open_dataset(opts.dataset_kwargs), opts.device, seed * opts.num_gpus + opts.rank)
    progress = ProgressBar(num_samples, label="ppl samples", stream=sys.stdout, log_interval=5.0, enabled=opts.verbose)
    dists: list[np.ndarray] = []
    done = 0
    while done < num_samples:
        with torch.no_grad():
            d = _gather(sampler(labels.sample(batch_size), generator), opts.num_gpus)
        dists.append(d.double().cpu().numpy())
        done += d.shape[0]
        progress.set(min(done, num_samples))
    return np.concatenate(dists)[:num_samples]

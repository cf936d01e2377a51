"""Latent-continuity report: how smooth and how invertible the latent spaces of one or several networks are.

The evidence of FakeCLR's Fig. 1 and Table 2, measured on the same latents and real images for every network:
- interpolation smoothness in Z and W (metrics.interpolation): mean and max step difference, fraction of jumps;
- PPL in Z and W, full paths with the face crop as upstream's ppl_zfull / ppl_wfull (metrics.perceptual_path_length),
  reported as mean and standard deviation of the 1 %..99 % trimmed samples (networks below 32 px: no crop);
- inversion error: real images projected with the projector (training.inversion), then LPIPS and MSE
  (pixels in [0, 1]) between each target and the image synthesised from its projected w.
`run_report` measures and writes report.json, report.md, interpolation.png and inversion.png (continuity_report).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from dnnlib.progress import ProgressBar
from metrics.features import DEFAULT_DATASET_CLASS, MetricOptions, open_dataset
from metrics.interpolation import JUMP_THRESHOLD, SPACES, latent_pairs, measure_smoothness
from metrics.perceptual_path_length import compute_ppl_distances, trimmed_mean_std
from metrics.vgg16 import VGG16
from training.inversion import ProjectionOptions, project, target_to_unit_range, vgg_input

PPL_EPSILON = 1e-4
MIN_CROP_RESOLUTION = 32  # the face crop keeps half the width: below 16 px VGG16's fifth tap has no pixels


@dataclass
class ContinuityOptions:
    pairs: int = 32  # interpolation pairs M
    steps: int = 16  # interpolation steps K (K + 1 frames)
    ppl_samples: int = 5000  # per space; 0 skips PPL
    invert: int = 8  # real images to project; 0 skips inversion
    proj_steps: int = 1000
    seed: int = 0
    threshold: float = JUMP_THRESHOLD
    ppl_crop: bool = True  # as upstream's ppl_zfull / ppl_wfull


@dataclass
class NetworkResult:
    label: str
    network: str
    smoothness: dict = field(default_factory=dict)  # space -> Smoothness.summary()
    ppl: dict = field(default_factory=dict)  # space -> {"mean", "std", "samples"}
    inversion: dict = field(default_factory=dict)  # {"lpips": {...}, "mse": {...}, "per_image": [...]}
    # For the figures, not the JSON:
    frames: torch.Tensor | None = None  # Z-space frames of the first pair [K + 1, C, H, W] in [0, 1]
    frame_diffs: np.ndarray | None = None  # their K step differences
    projections: torch.Tensor | None = None  # [N, C, H, W] uint8

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("frames", "frame_diffs", "projections")}


def mean_std(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def load_real_images(data: str, count: int, seed: int) -> torch.Tensor:
    """uint8 [N, C, H, W]: `count` images of the dataset drawn without replacement (same for every network)."""
    dataset = open_dataset(dict(class_name=DEFAULT_DATASET_CLASS, path=data))
    count = min(count, len(dataset))
    indices = sorted(np.random.RandomState(seed).choice(len(dataset), count, replace=False).tolist())
    return torch.from_numpy(np.stack([dataset[i][0] for i in indices]))


def measure_ppl(G: Any, data: str, vgg: VGG16, opts: ContinuityOptions, space: str, device: torch.device) -> dict:
    crop = opts.ppl_crop and G.img_resolution >= MIN_CROP_RESOLUTION
    metric_opts = MetricOptions(G=G, dataset_kwargs=dict(class_name=DEFAULT_DATASET_CLASS, path=data), device=device)
    dists = compute_ppl_distances(metric_opts, vgg.lpips, opts.ppl_samples, PPL_EPSILON, space, "full", crop,
                                  seed=opts.seed)
    mean, std = trimmed_mean_std(dists)
    return {"mean": mean, "std": std, "samples": int(opts.ppl_samples), "crop": crop}


def invert_images(G: Any, targets: torch.Tensor, vgg: VGG16, opts: ContinuityOptions,
                  device: torch.device) -> tuple[torch.Tensor, dict]:
    """Projections uint8 [N, C, H, W] (from the projected w with the network's own noise) and their errors."""
    projections, lpips, mse = [], [], []
    for i, target in enumerate(targets):
        print(f"  projecting real image {i + 1}/{len(targets)} ({opts.proj_steps} steps)", flush=True)
        progress = ProgressBar(opts.proj_steps, label="steps", stream=sys.stdout, log_interval=10.0)  # no long silence
        result = project(G, target, vgg, ProjectionOptions(num_steps=opts.proj_steps, seed=opts.seed + i), device,
                         on_step=lambda step, dist, loss: progress.set(step + 1))
        with torch.no_grad():
            img = G.synthesis(result.ws().to(device), noise_mode="const")
        proj = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()
        projections.append(proj[0])
        with torch.no_grad():
            lpips.append(float(vgg.lpips(vgg_input(target_to_unit_range(target)).to(device),
                                         vgg_input(target_to_unit_range(proj[0])).to(device))))
        mse.append(float((proj[0].float() / 255 - target.float() / 255).square().mean()))
    per_image = [{"lpips": a, "mse": b} for a, b in zip(lpips, mse)]
    errors = {"lpips": mean_std(np.array(lpips)), "mse": mean_std(np.array(mse)), "images": len(targets),
              "proj_steps": opts.proj_steps, "per_image": per_image}
    return torch.stack(projections), errors


def evaluate_network(G: Any, label: str, network: str, data: str, targets: torch.Tensor | None, vgg: VGG16,
                     opts: ContinuityOptions, device: torch.device) -> NetworkResult:
    result = NetworkResult(label=label, network=network)
    z0, z1 = (z.to(device) for z in latent_pairs(G.z_dim, opts.pairs, opts.seed))
    for space in SPACES:
        print(f"[{label}] interpolation smoothness in {space.upper()}: {opts.pairs} pairs x {opts.steps} steps",
              flush=True)
        smoothness, frames = measure_smoothness(G, z0, z1, opts.steps, space, opts.threshold)
        result.smoothness[space] = smoothness.summary()
        if space == "z":
            result.frames, result.frame_diffs = frames, smoothness.diffs[0]
    if opts.ppl_samples > 0:
        for space in SPACES:
            print(f"[{label}] PPL in {space.upper()}: {opts.ppl_samples} samples", flush=True)
            result.ppl[space] = measure_ppl(G, data, vgg, opts, space, device)
    if targets is not None:
        print(f"[{label}] inversion of {len(targets)} real image(s)", flush=True)
        result.projections, result.inversion = invert_images(G, targets, vgg, opts, device)
    sys.stdout.flush()
    return result

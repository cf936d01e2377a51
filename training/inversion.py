"""GAN inversion: find the w whose image looks like a target image (the method of upstream's projector).

One w (shared by all num_ws layers) is optimised, together with the synthesis network's constant noise
buffers, by Adam on

    loss = LPIPS(VGG16; synthesised, target) + 1e5 * multi-scale noise autocorrelation penalty.

- w starts at w_avg, the mean of 10,000 mapped samples (z from RandomState(123)); their spread w_std scales
  the exploration noise added to w: 0.05 * w_std * max(0, 1 - t / 0.75)^2, t = step / num_steps.
- Learning rate 0.1 with a 5 % cosine ramp-up and a 25 % cosine ramp-down.
- After each step every noise buffer is re-normalised to zero mean, unit variance.
- Images above 256 px are area-averaged to 256 px before VGG16 (smaller ones are compared as they are).

The network is deep-copied first, so the caller's noise buffers never change: an image synthesised from the
result with the caller's network (noise_mode='const') is exactly what `generate.py --projected-w` writes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from metrics.perceptual_path_length import crop_and_scale
from metrics.vgg16 import VGG16

W_AVG_SEED = 123  # upstream's fixed seed for the w statistics


@dataclass
class ProjectionOptions:
    num_steps: int = 1000
    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    seed: int = 303  # initial values of the noise buffers


@dataclass
class Projection:
    w_steps: torch.Tensor  # [num_steps, w_dim]: the optimised w after each step (the last one is the result)
    num_ws: int

    def ws(self, step: int = -1) -> torch.Tensor:
        """[1, num_ws, w_dim] for G.synthesis, after `step` (default: the final w)."""
        return self.w_steps[step].view(1, 1, -1).repeat(1, self.num_ws, 1)


def w_statistics(G: Any, num_samples: int, device: torch.device, batch: int = 1000) -> tuple[torch.Tensor, float]:
    """w_avg [1, 1, w_dim] and the scalar w_std = sqrt(mean squared distance to w_avg) of mapped samples."""
    z = torch.from_numpy(np.random.RandomState(W_AVG_SEED).randn(num_samples, G.z_dim)).float()
    with torch.no_grad():
        w = torch.cat([G.mapping(z[i: i + batch].to(device), None)[:, :1, :] for i in range(0, num_samples, batch)])
    w = w.double()
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    return w_avg.float(), w_std


def noise_buffers(G: Any) -> dict[str, torch.Tensor]:
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


def noise_regularization(buffers: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map with itself shifted by one pixel, at every scale down to 8 px.

    Pushes the optimiser to keep the noise white, so that it cannot smuggle image content into the noise.
    """
    total = torch.zeros([], device=buffers[0].device)
    for buf in buffers:
        noise = buf[None, None, :, :]
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean().square()
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean().square()
            if noise.shape[2] <= 8:
                break
            noise = torch.nn.functional.avg_pool2d(noise, kernel_size=2)
    return total


def learning_rate(t: float, opts: ProjectionOptions) -> float:
    """Initial rate times a cosine ramp-down over the last part and a linear ramp-up over the first part."""
    ramp = min(1.0, (1.0 - t) / opts.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / opts.lr_rampup_length)
    return opts.initial_learning_rate * ramp


def w_noise_scale(t: float, w_std: float, opts: ProjectionOptions) -> float:
    return w_std * opts.initial_noise_factor * max(0.0, 1.0 - t / opts.noise_ramp_length) ** 2


def vgg_input(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> VGG16's uint8 range, RGB, at most 256 px (the PPL pre-processing without the crop)."""
    return crop_and_scale(img, crop=False)


def target_to_unit_range(target: torch.Tensor) -> torch.Tensor:
    """uint8 [C, H, W] -> float [1, C, H, W] in [-1, 1], the generator's output range."""
    return target.unsqueeze(0).to(torch.float32) / 127.5 - 1


def _normalize_noise_(buffers: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buf in buffers:
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()


def project(G: Any, target: torch.Tensor, vgg: VGG16, opts: ProjectionOptions | None = None,
            device: torch.device = torch.device("cpu"),
            on_step: Callable[[int, float, float], None] | None = None) -> Projection:
    """Project uint8 target [C, H, W] (the network's resolution) into W; on_step(step, dist, loss) reports."""
    opts = opts or ProjectionOptions()
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if tuple(target.shape) != expected:
        raise ValueError(f"target has shape {tuple(target.shape)}, this network needs {expected}")
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    w_avg, w_std = w_statistics(G, opts.w_avg_samples, device)
    with torch.no_grad():
        target_taps = vgg.lpips_taps(vgg_input(target_to_unit_range(target).to(device)))

    generator = torch.Generator(device=device).manual_seed(opts.seed)
    buffers = list(noise_buffers(G).values())
    for buf in buffers:
        buf.copy_(torch.randn(buf.shape, generator=generator, device=device)).requires_grad_(True)
    w_opt = w_avg.detach().clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + buffers, betas=(0.9, 0.999), lr=opts.initial_learning_rate)
    w_steps = torch.zeros([opts.num_steps, w_opt.shape[-1]], dtype=torch.float32)

    for step in range(opts.num_steps):
        t = step / opts.num_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t, opts)
        w_noise = torch.randn(w_opt.shape, generator=generator, device=device) * w_noise_scale(t, w_std, opts)
        ws = (w_opt + w_noise).repeat([1, G.num_ws, 1])
        synth = G.synthesis(ws, noise_mode="const")
        dist = vgg.lpips_from_taps(vgg.lpips_taps(vgg_input(synth)), target_taps).sum()
        loss = dist + opts.regularize_noise_weight * noise_regularization(buffers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _normalize_noise_(buffers)
        w_steps[step] = w_opt.detach()[0, 0].cpu()
        if on_step is not None:
            on_step(step, float(dist.detach()), float(loss.detach()))
    return Projection(w_steps=w_steps, num_ws=G.num_ws)

"""DiffAugment (Zhao et al., NeurIPS 2020) as an add-on: `--method=diffaugment` (on plain StyleGAN2: its
default --aug is noaug, as in the authors' StyleGAN2 port) or `diffaugment+lecam`.

Every image D sees, reals and fakes, in G and D phases, goes through the policy's differentiable
transforms (`augment_input`, before ADA's pipe if one is on). Each parameter is drawn per sample
(shared over channels) from the per-rank global RNG, a fresh draw per D call. x in [-1, 1]:
  color        brightness x + b, b ~ U[-0.5, 0.5); saturation (x - m_c) * s + m_c, m_c the channel mean,
               s ~ U[0, 2); contrast (x - m) * c + m, m the image mean, c ~ U[0.5, 1.5)
  translation  shift by integers t ~ U{-s..s}, s = int(size / 8 + 0.5), per axis; uncovered pixels 0
  cutout       a square of side k = int(size / 2 + 0.5) zeroed, centre ~ U{0..size} (even k; 0..size-1 odd),
               clipped at the borders
R1 is taken w.r.t. the un-augmented reals, through the transforms (the lazy Dreg pass, ADA's convention).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from training.method import Method
from training.method_registry import register

OPERATIONS = ("color", "translation", "cutout")
TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


@dataclasses.dataclass
class DiffAugmentOptions:
    diffaugment_policy: str = dataclasses.field(default="color,translation,cutout", metadata={
        "help": "DiffAugment: comma-separated transforms in order, from color, translation, cutout "
                "(the paper's few-shot policy; color,cutout for full CIFAR)"})

    def __post_init__(self):
        ops = [op.strip() for op in self.diffaugment_policy.split(",") if op.strip()]
        if not ops or any(op not in OPERATIONS for op in ops):
            raise ValueError(f"--diffaugment_policy={self.diffaugment_policy!r}: use a comma-separated list of "
                             f"{', '.join(OPERATIONS)}")
        self.diffaugment_policy = ",".join(ops)


def brightness(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x + b


def saturation(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * s + mean


def contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * c + mean


def translate(x: torch.Tensor, ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
    """out[n, :, h, w] = x[n, :, h + ty[n], w + tx[n]] where that lies inside the image, else 0."""
    n, _, height, width = x.shape
    rows = torch.arange(height, device=x.device)[None, :, None] + ty.view(n, 1, 1)
    cols = torch.arange(width, device=x.device)[None, None, :] + tx.view(n, 1, 1)
    inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).unsqueeze(1)
    batch = torch.arange(n, device=x.device)[:, None, None]
    moved = x[batch, :, rows.clamp(0, height - 1), cols.clamp(0, width - 1)].permute(0, 3, 1, 2)  # [N, C, H, W]
    return moved * inside.to(x.dtype)


def cutout(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, size_y: int, size_x: int) -> torch.Tensor:
    """Zero rows cy - size_y // 2 .. + size_y - 1 and the same for columns (clipped to the image)."""
    n, _, height, width = x.shape
    top, left = cy.view(n, 1, 1) - size_y // 2, cx.view(n, 1, 1) - size_x // 2
    rows = torch.arange(height, device=x.device)[None, :, None]
    cols = torch.arange(width, device=x.device)[None, None, :]
    hole = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.rand([x.shape[0], 1, 1, 1], device=x.device, dtype=x.dtype) * (high - low) + low


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """The policy's transforms in order, each with fresh per-sample draws."""
    n, _, height, width = x.shape
    for op in policy.split(","):
        if op == "color":
            x = brightness(x, _uniform(x, -0.5, 0.5))
            x = saturation(x, _uniform(x, 0, 2))
            x = contrast(x, _uniform(x, 0.5, 1.5))
        elif op == "translation":
            sy, sx = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
            ty = torch.randint(-sy, sy + 1, [n], device=x.device)
            tx = torch.randint(-sx, sx + 1, [n], device=x.device)
            x = translate(x, ty, tx)
        elif op == "cutout":
            ky, kx = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
            cy = torch.randint(0, height + 1 - ky % 2, [n], device=x.device)
            cx = torch.randint(0, width + 1 - kx % 2, [n], device=x.device)
            x = cutout(x, cy, cx, ky, kx)
    return x


@register("diffaugment", order=11, addon=True, options=DiffAugmentOptions, default_aug="noaug",
          description="DiffAugment: differentiable color/translation/cutout on every D input (add-on)")
class DiffAugment(Method):
    """DiffAugment on every image D sees."""

    def __init__(self, options: DiffAugmentOptions):
        self.policy = options.diffaugment_policy

    @classmethod
    def create(cls, options: Any, env: Any) -> "DiffAugment":
        return cls(DiffAugmentOptions(**options.addons.get("diffaugment", {})))

    def augment_input(self, img: torch.Tensor) -> torch.Tensor:
        return diff_augment(img, self.policy)

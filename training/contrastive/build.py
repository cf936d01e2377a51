"""Turns resolved method options into the loss hook that plugs into `StyleGAN2Loss`."""

from __future__ import annotations

from typing import Any, Optional

import torch

from training.contrastive.hooks import ContraGAN2CHook, FakeCLRHook, InsGenHook
from training.contrastive.presets import MethodOptions, contrastive_enabled
from training.loss_hooks import LossHook


def build_hook(options: MethodOptions, G: torch.nn.Module, D: torch.nn.Module, device: torch.device,
               G_opt_kwargs: dict[str, Any], D_opt_kwargs: dict[str, Any], G_reg_interval: Optional[int],
               D_reg_interval: Optional[int], total_kimg: float, batch_size: int, rank: int = 0,
               num_gpus: int = 1, seed: int = 0) -> Optional[LossHook]:
    """The method's loss hook, or None when no contrastive term is active (plain ADA / ADA-Linear).

    `G_opt_kwargs` / `D_opt_kwargs` are the uncorrected optimiser settings (lr, betas, eps);
    the heads apply the lazy-regularisation correction themselves. `D` is the unwrapped
    discriminator on `device` (D_ema is copied from it). `rank` / `num_gpus` are accepted for
    symmetry with the training loop; the collectives use torch.distributed's own state. `seed` (the
    run's --seed) seeds the heads' initialisation, identically on every rank.
    """
    if not contrastive_enabled(options):
        return None
    if options.cond_loss == "2c":
        if options.fake_head or options.real_head:
            raise ValueError("--method: the 2C loss cannot be combined with instance heads in one run")
        c_dim = int(getattr(G, "c_dim", 0) or getattr(D, "c_dim", 0))  # StudioGAN's D is unconditional
        return ContraGAN2CHook(D, options, device=device, c_dim=c_dim, D_opt_kwargs=D_opt_kwargs,
                               D_reg_interval=D_reg_interval, seed=seed)
    hook_class = InsGenHook if options.real_head else FakeCLRHook
    return hook_class(D, options, device=device, G_opt_kwargs=G_opt_kwargs, D_opt_kwargs=D_opt_kwargs,
                      G_reg_interval=G_reg_interval, D_reg_interval=D_reg_interval, total_kimg=total_kimg,
                      batch_size=batch_size, num_ws=getattr(G, "num_ws", None), seed=seed)

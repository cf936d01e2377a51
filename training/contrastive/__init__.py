"""The contrastive methods (FakeCLR, InsGen, ContraGAN 2C) as one package with one plug-in point.

    presets.py  `--method` presets, option resolution and validation (MethodOptions)
    build.py    options -> the loss hook (`build_hook`), the only thing the training loop calls
    hooks.py    the hooks themselves (instance discrimination, 2C) on `training.loss_hooks.LossHook`
    head.py     projection heads, momentum copies (D_ema) and their optimisers
    queue.py    time-stamped negative queues and the diversity-aware length schedule
    losses.py   InfoNCE with the forgetting factor, the 2C loss
    noise.py    latent perturbations of the positive key
    dist.py     the few collectives the hooks need across ranks

The dependency order is presets <- hooks <- build; nothing here imports the training loop.
"""

from training.contrastive.build import build_hook
from training.contrastive.presets import METHODS, MethodOptions, resolve_method

__all__ = ["METHODS", "MethodOptions", "build_hook", "resolve_method"]

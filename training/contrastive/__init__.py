"""The contrastive methods (FakeCLR, InsGen, ContraGAN 2C) as one package with one plug-in point.

    presets.py  option resolution and validation (MethodOptions); presets come from the method registry
    hooks.py    the methods themselves (instance discrimination, 2C) on `training.method.Method`,
                registered as insgen, fakeclr, contragan
    head.py     projection heads, momentum copies (D_ema) and their optimisers
    queue.py    time-stamped negative queues and the diversity-aware length schedule
    losses.py   InfoNCE with the forgetting factor, the 2C loss
    noise.py    latent perturbations of the positive key

The dependency order is presets <- hooks; nothing here imports the training loop or runs a collective
(the loop gathers the keys each method hands it; the 2C gather is the loop's, passed in MethodEnv).
"""

from training.contrastive.presets import MethodOptions, resolve_method

__all__ = ["MethodOptions", "resolve_method"]

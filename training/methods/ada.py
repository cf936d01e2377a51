"""StyleGAN2-ADA itself: no extra loss term. The augmentation pipe and its p controller live in the loop
(training.ada), so these methods only name presets of training.contrastive.presets.MethodOptions."""

from __future__ import annotations

from training.method import Method
from training.method_registry import register


@register("ada", order=0, description="StyleGAN2-ADA (adaptive p)")
class ADA(Method):
    """StyleGAN2-ADA with the adaptive p controller."""

    @classmethod
    def create(cls, options, env):
        return None  # nothing to add to the loss


@register("adalinear", order=1, preset={"ada_linear": True}, description="StyleGAN2-ADA with the linear p ramp (ADA-Linear)")
class ADALinear(ADA):
    """StyleGAN2-ADA with ADA-Linear's p ramp."""

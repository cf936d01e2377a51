"""The plug-in point between `StyleGAN2Loss` and auxiliary losses (contrastive methods, ...).

`StyleGAN2Loss` knows nothing about any method. For every phase round it builds a
`PhaseContext` holding what it already computed (latents, images, D logits and D's
intermediate features), asks each hook for extra loss terms, adds them to the phase loss
before the single backward pass, and calls `after_backward` once the gradients exist.

The training loop calls `begin_iteration` once per iteration (before the phases; e.g. to
update a momentum encoder), `end_iteration` after the optimiser steps, and snapshots the
hooks through `state_dict` / `load_state_dict` (queues, heads, momentum copies, optimisers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

# run_G(z, c, update_emas=False, mixing=None) -> (img, ws)
#   `mixing`: optional (z2, cutoff) to reuse a style-mixing draw; None draws as usual.
RunG = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# run_D(img, c, update_emas=False, D=None) -> (logits, features)
#   applies the augmentation pipe (a fresh draw per call) before D; `D` overrides the
#   discriminator (e.g. a momentum copy D_ema); features are D's [N, C, 4, 4] map before the epilogue.
RunD = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass
class PhaseContext:
    """Everything a hook may need from one round of one phase. Absent items are None."""

    phase: str                       # 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'
    gain: float                      # the phase interval (loss terms are multiplied by it before backward)
    sync: bool                       # True on the last accumulation round (DDP gradient all-reduce)
    run_G: RunG
    run_D: RunD
    gen_z: Optional[torch.Tensor] = None
    gen_c: Optional[torch.Tensor] = None
    gen_img: Optional[torch.Tensor] = None
    gen_ws: Optional[torch.Tensor] = None
    gen_mixing: Optional[tuple[torch.Tensor, int]] = None  # (z2, cutoff) used for gen_img, if mixed
    gen_logits: Optional[torch.Tensor] = None
    gen_features: Optional[torch.Tensor] = None
    real_img: Optional[torch.Tensor] = None                # non-augmented reals in [-1, 1]
    real_c: Optional[torch.Tensor] = None
    real_logits: Optional[torch.Tensor] = None
    real_features: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


class LossHook:
    """Base class: every method is a no-op, so a hook overrides only what it needs."""

    def needs_features(self, phase: str) -> bool:
        """Whether the loss should ask D for its intermediate features in this phase."""
        return False

    def needs_real_logits(self, phase: str) -> bool:
        """Whether the hook needs a D pass on the reals in this phase (Dmain always has one)."""
        return False

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        """Extra per-sample or scalar loss for this round; its mean is added to the phase loss."""
        return None

    def after_backward(self, ctx: PhaseContext) -> None:
        """Called after the round's backward (e.g. step a head optimiser, enqueue keys)."""

    def begin_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        """Called once per training iteration before the first phase."""

    def end_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        """Called once per training iteration after the last phase's optimiser step."""

    def restart_momentum_copies(self) -> None:
        """Called when the networks were restored from a snapshot but the hook's own state was not
        (weights-only resume, transfer): momentum copies such as D_ema must start from the resumed D."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """Named modules the training loop should move to the device / wrap / snapshot."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

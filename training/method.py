"""The method plug-in: what a training method (FakeCLR, InsGen, LeCam, ...) may do, and nothing more.

A method is one `Method` subclass registered under its name (`training.method_registry.register`).
The loss (`training.loss.StyleGAN2Loss`) knows no method; in every round of every phase it

  1. passes each image D sees through `augment_input` (DiffAugment-like transforms, before ADA's pipe)
     and each real batch through `real_input` (e.g. APA's pseudo reals) before D,
  2. builds a `PhaseContext` with what it already computed (latents, images, logits, features),
  3. adds the mean of `loss_terms(ctx)` to the phase loss before the round's single backward.

The training loop owns every optimiser step and collective: after a phase's own step it averages,
sanitises and steps the optimisers the method returns from `phase_optimizers` (heads step once per
phase, after D's), then calls `end_phase`. Around the phases it calls `begin_iteration` /
`end_iteration`; snapshots go through `modules`, `state_dict` and `load_state_dict`.
Everything here is a no-op, so a method overrides only what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

# run_G(z, c, update_emas=False, mixing=None) -> (img, ws)
#   `mixing`: optional (z2, cutoff) to reuse a style-mixing draw; None draws as usual.
RunG = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# run_D(img, c, update_emas=False, D=None) -> (logits, features)
#   applies the method's input augmentation and the ADA pipe (fresh draws per call) before D; `D` overrides
#   the discriminator (e.g. a momentum copy D_ema); features are D's [N, C, 4, 4] map before the epilogue.
RunD = Callable[..., tuple[torch.Tensor, torch.Tensor]]

D_PHASES = ("Dmain", "Dboth")  # phases with D's adversarial (main) term
G_PHASES = ("Gmain", "Gboth")  # phases with G's adversarial (main) term


@dataclass
class PhaseContext:
    """Everything a method may need from one round of one phase. Absent items are None."""

    phase: str                       # 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'
    gain: float                      # the loss is multiplied by it before backward (phase interval / rounds)
    run_G: RunG
    run_D: RunD
    gen_z: Optional[torch.Tensor] = None
    gen_c: Optional[torch.Tensor] = None
    gen_img: Optional[torch.Tensor] = None
    gen_ws: Optional[torch.Tensor] = None
    gen_mixing: Optional[tuple[torch.Tensor, int]] = None  # (z2, cutoff) used for gen_img, if mixed
    gen_logits: Optional[torch.Tensor] = None
    gen_features: Optional[torch.Tensor] = None
    real_img: Optional[torch.Tensor] = None                # the reals D saw (after `real_input`), not augmented
    real_c: Optional[torch.Tensor] = None
    real_logits: Optional[torch.Tensor] = None
    real_features: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodEnv:
    """What a method is built from: the networks and the run's settings."""

    G: torch.nn.Module
    D: torch.nn.Module                 # unwrapped, on `device`
    device: torch.device
    G_opt_kwargs: dict[str, Any]       # uncorrected optimiser settings (lr, betas, eps)
    D_opt_kwargs: dict[str, Any]
    G_reg_interval: Optional[int]
    D_reg_interval: Optional[int]
    total_kimg: float
    batch_size: int                    # global batch
    seed: int = 0                      # the run's --seed (seeds heads without touching the global RNG)


class Method:
    """Base class of every training method; each hook is a no-op."""

    name = "base"          # set by training.method_registry.register
    description = ""       # one line for --help and docs

    @classmethod
    def create(cls, options: Any, env: MethodEnv) -> Optional["Method"]:
        """The method for resolved options (training.contrastive.presets.MethodOptions); None: nothing to add."""
        return cls()

    # -- what the loss asks ------------------------------------------------------

    def needs_features(self, phase: str) -> bool:
        """Whether the loss should ask D for its intermediate features in this phase."""
        return False

    def needs_real_logits(self, phase: str) -> bool:
        """Whether the method needs a D pass on the reals in this phase (D phases always have one)."""
        return False

    def augment_input(self, img: torch.Tensor) -> torch.Tensor:
        """Every image D sees, reals and fakes, in G and D phases (before the ADA pipe); differentiable."""
        return img

    def real_input(self, real_img: torch.Tensor, phase: str) -> torch.Tensor:
        """The real batch of a D phase (Dmain, Dreg, Dboth) before D sees it."""
        return real_img

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        """Extra per-sample or scalar loss for this round; its mean is added to the phase loss."""
        return None

    # -- what the training loop asks -----------------------------------------------

    def phase_optimizers(self, phase: str) -> list[torch.optim.Optimizer]:
        """The method's own optimisers to step after `phase`'s step (their gradients are zeroed before it)."""
        return []

    def end_phase(self, phase: str) -> None:
        """After the phase and its optimiser steps (e.g. enqueue the keys the phase produced)."""

    def begin_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        """Once per training iteration before the first phase."""

    def end_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        """Once per training iteration after the last phase."""

    def restart_momentum_copies(self) -> None:
        """The networks were restored but the method's state was not (weights-only resume, transfer):
        momentum copies such as D_ema must start from the resumed D."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """Named modules the training loop moves to the device and snapshots."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def step_phase_optimizers(optimizers: list[torch.optim.Optimizer],
                          average: Callable[[list[torch.nn.Parameter]], None]) -> None:
    """Average (over ranks) and sanitise the gradients of each optimiser's parameters, step, zero them.

    Called by the training loop (the owner of every step) after the phase's own step.
    """
    for optimizer in optimizers:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        average(params)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

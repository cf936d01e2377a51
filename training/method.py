"""The method plug-in: what a training method (FakeCLR, InsGen, LeCam, ...) may do, and nothing more.

A method is one `Method` subclass registered under its name (`training.method_registry.register`).
The loss (`training.loss.StyleGAN2Loss`) knows no method; in every round of every phase it

  1. passes each image D sees through `augment_input` (DiffAugment-like transforms, before ADA's pipe)
     and each real batch through `real_input` (e.g. APA's pseudo reals) before D,
  2. builds a `PhaseContext` with what it already computed (latents, images, logits, features),
  3. adds the mean of `loss_terms(ctx)` to the phase loss before the round's single backward.

The training loop owns every optimiser step and every collective (training/phase_steps.py): after a
phase's own step it averages over ranks, sanitises and steps the optimisers the method returns from
`phase_optimizers` (heads step once per phase, after D's, whatever the number of accumulation rounds),
all-gathers the tensors the method returns from `tensors_to_gather` and hands them to `end_phase`.
Around the phases it calls `begin_iteration` / `end_iteration`, and it adjusts the probabilities of
`adaptive_probabilities` on ADA's cadence (their statistic is reduced over ranks by training_stats).
A gather a loss term needs inside the forward pass (ContraGAN's 2C) is the loop's `MethodEnv.all_gather`;
a method never calls torch.distributed itself. Snapshots go through `modules`, `state_dict` and
`load_state_dict`. Everything here is a no-op, so a method overrides only what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from training import distributed

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
    world_size: int = 1                # number of ranks
    # all_gather(x, keep_grad=False): x from every rank along dim 0, in rank order (the loop's collective)
    all_gather: Callable[..., torch.Tensor] = distributed.all_gather


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
        """The method's own optimisers; the loop zeroes them with the phase's and steps them once after it."""
        return []

    def tensors_to_gather(self, phase: str) -> dict[str, torch.Tensor]:
        """Tensors produced in `phase` that the method needs from every rank (e.g. keys to enqueue);
        the loop all-gathers each (rank order, dim 0, no gradient) after the steps, for `end_phase`."""
        return {}

    def end_phase(self, phase: str, gathered: dict[str, torch.Tensor]) -> None:
        """After the phase and its optimiser steps, with `tensors_to_gather`'s tensors from every rank."""

    def adaptive_probabilities(self) -> list[tuple[Any, torch.nn.Module]]:
        """(controller, holder) pairs: the loop calls `controller.update(holder, ...)` (training.ada's
        interface; `holder.p` a buffer) after each iteration, as it does for ADA's pipe."""
        return []

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


"""LeCam regularisation (Tseng et al., CVPR 2021) as an add-on: `--method=ada+lecam`, `fakeclr+lecam`, ...

In D's main phase, with EMA anchors alpha_R / alpha_F of D's batch-mean logits on reals / fakes:
    R_LC = mean_i relu(D(x_i) - alpha_F)^2 + mean_j relu(alpha_R - D(G(z_j)))^2,   L_D += lecam_weight * R_LC
(the one-sided form of both released implementations). The logits are those of the main loss (after
the ADA pipe or DiffAugment); no extra D pass. The anchors are updated with the current batch's
(detached) means BEFORE R_LC is computed: alpha <- decay * alpha + (1 - decay) * mean, starting at 0
and zero-debiased (alpha / (1 - decay^t) after t updates), as in the StyleGAN2 (TF) integration.
Each rank keeps its own anchors (as each TF tower did); G's loss is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from torch_utils import training_stats
from training.method import D_PHASES, Method, PhaseContext
from training.method_registry import register


@dataclasses.dataclass
class LeCamOptions:
    lecam_weight: float = dataclasses.field(default=3e-7, metadata={"help": "LeCam: lambda, the weight of R_LC on D "
                                            "(StyleGAN2 FFHQ-1k; 1e-6 for CIFAR-10 10%, 0.3 in BigGAN)"})
    lecam_decay: float = dataclasses.field(default=0.99, metadata={"help": "LeCam: EMA decay of the anchors "
                                           "(zero-debiased)"})

    def __post_init__(self):
        if not self.lecam_weight >= 0:
            raise ValueError(f"--lecam_weight={self.lecam_weight}: must be >= 0 (0 disables the term)")
        if not 0 <= self.lecam_decay < 1:
            raise ValueError(f"--lecam_decay={self.lecam_decay}: must lie in [0, 1)")


def lecam_penalty(real_logits: torch.Tensor, fake_logits: torch.Tensor, anchor_real: torch.Tensor,
                  anchor_fake: torch.Tensor) -> torch.Tensor:
    """R_LC (one-sided): reals above the fake anchor and fakes below the real anchor are penalised."""
    real_term = torch.relu(real_logits - anchor_fake).square().mean()
    fake_term = torch.relu(anchor_real - fake_logits).square().mean()
    return real_term + fake_term


@register("lecam", order=10, addon=True, options=LeCamOptions,
          description="LeCam regulariser on D with EMA anchors of D's real/fake outputs (add-on)")
class LeCam(Method):
    """LeCam: R_LC on D's main loss with zero-debiased EMA anchors."""

    def __init__(self, options: LeCamOptions, device: torch.device):
        self.options = options
        self.ema = torch.zeros([2], device=device)  # raw EMAs of (real, fake) batch means, before debiasing
        self.updates = 0                            # t, for the zero-debias 1 - decay^t

    @classmethod
    def create(cls, options: Any, env: Any) -> Optional["LeCam"]:
        return cls(LeCamOptions(**options.addons.get("lecam", {})), env.device)

    def anchors(self) -> torch.Tensor:
        """(alpha_R, alpha_F) as used by R_LC: the EMAs divided by 1 - decay^t."""
        return self.ema / (1 - self.options.lecam_decay ** max(self.updates, 1))

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        if ctx.phase not in D_PHASES or ctx.gen_logits is None or ctx.real_logits is None:
            return None
        means = torch.stack([ctx.real_logits.detach().mean(), ctx.gen_logits.detach().mean()]).float()
        self.ema.lerp_(means, 1 - self.options.lecam_decay)
        self.updates += 1
        anchor_real, anchor_fake = self.anchors()
        penalty = lecam_penalty(ctx.real_logits, ctx.gen_logits, anchor_real, anchor_fake)
        training_stats.report("Loss/LeCam/penalty", penalty.detach())
        training_stats.report("Loss/LeCam/anchor_real", anchor_real)
        training_stats.report("Loss/LeCam/anchor_fake", anchor_fake)
        return penalty * self.options.lecam_weight

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.detach().clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "ema" not in state:
            raise ValueError("resume: the snapshot has no LeCam anchors; resume with the --method it was trained with")
        self.ema.copy_(torch.as_tensor(state["ema"]))
        self.updates = int(state["updates"])

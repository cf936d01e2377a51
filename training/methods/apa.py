"""APA, adaptive pseudo augmentation (Jiang et al., NeurIPS 2021) as an add-on: `--method=apa` (alone: its
default --aug is noaug, the paper's main setting) or `ada+apa` (with ADA's pipe, the paper's ADA + APA).

In every D phase (Dmain, the lazy Dreg pass, Dboth) each real image is replaced, with probability p, by
the detached generator output of the most recent Gmain round (same batch position, style mixing as
drawn there) and keeps the "real" label: x'_i = m_i * sg(G(z'_i)) + (1 - m_i) * x_i, m_i ~ Bernoulli(p).
R1 is then taken w.r.t. x' (so also on the pseudo reals). p follows the ADA heuristic on the mixed real
branch: lambda_r = mean sign(D(x')) over the last `apa_interval` iterations (all ranks), and
p <- max(0, p + sign(lambda_r - apa_target) * batch * apa_interval / (apa_kimg * 1000)); no upper clamp
(p > 1 acts as 1). The controller is training.ada.AdaptiveP on APA's own p, which the training loop
updates (`adaptive_probabilities`) after each iteration, as ADA's. With `ada+apa`, ADA's p
follows the same rule on the same statistic (equal with equal targets/speeds, up to ADA's clamp at 1),
where the released code drives both from one p.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from torch_utils import training_stats
from training.ada import AdaptiveP
from training.method import G_PHASES, Method, PhaseContext
from training.method_registry import register


@dataclasses.dataclass
class APAOptions:
    apa_target: float = dataclasses.field(default=0.6, metadata={
        "help": "APA: target of mean sign(D(x')) (the released code; 0.8 was used for Anime, smaller for fewer images)"})
    apa_kimg: float = dataclasses.field(default=500.0, metadata={"help": "APA: p can move by 1 per this many kimg"})
    apa_interval: int = dataclasses.field(default=4, metadata={"help": "APA: adjust p every this many iterations"})
    apa_p: float = dataclasses.field(default=0.0, metadata={"help": "APA: initial p"})

    def __post_init__(self):
        if not 0 <= self.apa_target <= 1:
            raise ValueError(f"--apa_target={self.apa_target}: must lie in [0, 1]")
        if not self.apa_kimg > 0:
            raise ValueError(f"--apa_kimg={self.apa_kimg}: must be > 0")
        if self.apa_interval < 1:
            raise ValueError(f"--apa_interval={self.apa_interval}: must be an integer >= 1")
        if not self.apa_p >= 0:
            raise ValueError(f"--apa_p={self.apa_p}: must be >= 0")


def pseudo_augment(real: torch.Tensor, pseudo: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """x'_i = pseudo_i where flags_i, else real_i (flags: bool [N])."""
    return torch.where(flags.view(-1, 1, 1, 1), pseudo.to(real.dtype), real)


class _Probability(torch.nn.Module):
    """Holds p as a host buffer, the interface training.ada's controllers adjust."""

    def __init__(self, p: float):
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))


@register("apa", order=12, addon=True, options=APAOptions, default_aug="noaug",
          description="APA: fakes shown to D as reals with an adaptively controlled probability (add-on)")
class APA(Method):
    """Adaptive pseudo augmentation of D's real branch."""

    def __init__(self, options: APAOptions):
        self.options = options
        self.probability = _Probability(options.apa_p)
        self.controller = AdaptiveP(target=options.apa_target, interval=options.apa_interval, kimg=options.apa_kimg)
        self.pseudo: Optional[torch.Tensor] = None  # detached fakes of the latest Gmain round

    @classmethod
    def create(cls, options: Any, env: Any) -> "APA":
        return cls(APAOptions(**options.addons.get("apa", {})))

    @property
    def p(self) -> float:
        return float(self.probability.p)  # a host tensor: no device sync

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        if ctx.phase in G_PHASES and ctx.gen_img is not None:
            self.pseudo = ctx.gen_img.detach()
        return None

    def real_input(self, real_img: torch.Tensor, phase: str) -> torch.Tensor:
        if self.p <= 0 or self.pseudo is None or self.pseudo.shape != real_img.shape:
            return real_img
        flags = torch.rand([real_img.shape[0]], device=real_img.device) < self.p
        return pseudo_augment(real_img, self.pseudo, flags)

    def adaptive_probabilities(self) -> list[tuple[AdaptiveP, torch.nn.Module]]:
        return [(self.controller, self.probability)]  # the loop adjusts p on ADA's cadence, after each iteration

    def end_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        training_stats.report("Progress/apa_p", self.p)  # the p this iteration used

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "controller": self.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "p" not in state:
            raise ValueError("resume: the snapshot has no APA state; resume with the --method it was trained with")
        self.probability.p.fill_(float(state["p"]))
        self.controller.load_state_dict(state["controller"])

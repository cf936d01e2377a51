"""What the training loop does around one phase, apart from the loss: every optimiser step and collective.

    begin_phase   zero the phase's and the method's gradients
    (the loss accumulates one or more rounds)
    finish_phase  average over ranks and sanitise the phase's gradients, step its optimiser; then the same
                  for each optimiser the method hands over (heads step once per phase, after D's), all-gather
                  the tensors the method asks for and hand them to its `end_phase`

The loop and the test stand-ins (tests/contrastive_standins.py) share these, so both step in one order.
"""

from __future__ import annotations

from typing import Optional

import torch

from training import distributed
from training.method import Method


def begin_phase(phase_name: str, optimizer: torch.optim.Optimizer, method: Optional[Method]) -> None:
    for opt in (optimizer, *_method_optimizers(phase_name, method)):
        opt.zero_grad(set_to_none=True)


def finish_phase(phase_name: str, optimizer: torch.optim.Optimizer, method: Optional[Method]) -> None:
    """Step the phase's optimiser, then the method's; gather what the method asks for; end the method's phase."""
    step_optimizer(optimizer, stat_name=f"Debug/nonfinite_grad/{phase_name}")
    for opt in _method_optimizers(phase_name, method):
        step_optimizer(opt)
        opt.zero_grad(set_to_none=True)
    if method is not None:
        requests = method.tensors_to_gather(phase_name)
        method.end_phase(phase_name, {name: distributed.all_gather(x) for name, x in requests.items()})


def step_optimizer(optimizer: torch.optim.Optimizer, stat_name: Optional[str] = None) -> None:
    """One flat all-reduce of the optimiser's gradients (averaged, NaN -> 0, inf clamped), then its step."""
    distributed.average_and_sanitize_gradients(_params(optimizer), stat_name=stat_name)
    optimizer.step()


def _params(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _method_optimizers(phase_name: str, method: Optional[Method]) -> list[torch.optim.Optimizer]:
    return method.phase_optimizers(phase_name) if method is not None else []

"""Builds the method of a run from its options: one Method, or several ('fakeclr+lecam') chained."""

from __future__ import annotations

from typing import Any, Optional

import torch

from training import distributed
from training.method import Method, MethodEnv, PhaseContext
from training.method_registry import method_class, split_method


def build_method(options: Any, G: torch.nn.Module, D: torch.nn.Module, device: torch.device,
                 G_opt_kwargs: dict[str, Any], D_opt_kwargs: dict[str, Any], G_reg_interval: Optional[int],
                 D_reg_interval: Optional[int], total_kimg: float, batch_size: int, seed: int = 0,
                 world_size: Optional[int] = None) -> Optional[Method]:
    """The run's method (None: plain ADA / ADA-Linear, nothing to add to the loss).

    `options` is the resolved training.contrastive.presets.MethodOptions; `D` the unwrapped discriminator
    on `device` (momentum copies are made from it); `world_size` defaults to the process group's.
    """
    world_size = distributed.world_size() if world_size is None else int(world_size)
    env = MethodEnv(G=G, D=D, device=torch.device(device), G_opt_kwargs=G_opt_kwargs, D_opt_kwargs=D_opt_kwargs,
                    G_reg_interval=G_reg_interval, D_reg_interval=D_reg_interval, total_kimg=float(total_kimg),
                    batch_size=int(batch_size), seed=int(seed), world_size=world_size,
                    all_gather=distributed.all_gather)
    base, addons = split_method(options.method)
    built = [method_class(name).create(options, env) for name in (base, *addons)]
    built = [method for method in built if method is not None]
    if not built:
        return None
    return built[0] if len(built) == 1 else MethodStack(built)


class MethodStack(Method):
    """Several methods on one loss: inputs pass through each in order, terms add up, state is kept per method."""

    def __init__(self, methods: list[Method]):
        self.methods = list(methods)
        self.name = "+".join(method.name for method in self.methods)

    def needs_features(self, phase: str) -> bool:
        return any(m.needs_features(phase) for m in self.methods)

    def needs_real_logits(self, phase: str) -> bool:
        return any(m.needs_real_logits(phase) for m in self.methods)

    def augment_input(self, img: torch.Tensor) -> torch.Tensor:
        for method in self.methods:
            img = method.augment_input(img)
        return img

    def real_input(self, real_img: torch.Tensor, phase: str) -> torch.Tensor:
        for method in self.methods:
            real_img = method.real_input(real_img, phase)
        return real_img

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        terms = [term.mean() for term in (m.loss_terms(ctx) for m in self.methods) if term is not None]
        return sum(terms) if terms else None

    def phase_optimizers(self, phase: str) -> list[torch.optim.Optimizer]:
        return [opt for m in self.methods for opt in m.phase_optimizers(phase)]

    def tensors_to_gather(self, phase: str) -> dict[str, torch.Tensor]:
        return {f"{m.name}/{name}": x for m in self.methods for name, x in m.tensors_to_gather(phase).items()}

    def end_phase(self, phase: str, gathered: dict[str, torch.Tensor]) -> None:
        for method in self.methods:
            prefix = f"{method.name}/"
            method.end_phase(phase, {k[len(prefix):]: x for k, x in gathered.items() if k.startswith(prefix)})

    def adaptive_probabilities(self) -> list[tuple[Any, torch.nn.Module]]:
        return [pair for m in self.methods for pair in m.adaptive_probabilities()]

    def begin_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        for method in self.methods:
            method.begin_iteration(cur_nimg, batch_idx)

    def end_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        for method in self.methods:
            method.end_iteration(cur_nimg, batch_idx)

    def restart_momentum_copies(self) -> None:
        for method in self.methods:
            method.restart_momentum_copies()

    def modules(self) -> dict[str, torch.nn.Module]:
        return {name: module for m in self.methods for name, module in m.modules().items()}  # names are distinct

    def state_dict(self) -> dict[str, Any]:
        return {m.name: m.state_dict() for m in self.methods}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [m.name for m in self.methods if m.name not in state]
        if missing:
            raise ValueError(f"resume: the snapshot has no state for method(s) {', '.join(missing)}; "
                             "resume with the --method the snapshot was trained with")
        for method in self.methods:
            method.load_state_dict(state[method.name])

"""Training phases and the lazy-regularisation optimiser correction, in one place.

With lazy regularisation every `I`-th iteration runs the regulariser (gain I) besides the
main loss. Adam then sees I+1 gradient steps per I iterations, so its learning rate and
momentum decay are rescaled by r = I / (I + 1) (lr * r, betas ** r) to keep the effective
dynamics of regularising every step. The contrastive heads reuse `lazy_reg_opt_kwargs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch

import dnnlib


@dataclass
class Phase:
    name: str                    # 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'
    module: torch.nn.Module      # the module whose gradients this phase enables
    opt: torch.optim.Optimizer   # shared by <X>main and <X>reg
    interval: int                # run when batch_idx % interval == 0; also the loss gain


def lazy_reg_opt_kwargs(opt_kwargs: dict[str, Any], reg_interval: Optional[int]) -> dnnlib.EasyDict:
    """Copy of `opt_kwargs` with lr * r and betas ** r, r = I / (I + 1); unchanged when I is None."""
    kwargs = dnnlib.EasyDict(opt_kwargs)
    if "betas" in kwargs:  # recent torch.optim.Adam rejects mixed int/float betas such as (0, 0.99)
        kwargs.betas = tuple(float(beta) for beta in kwargs.betas)
    if reg_interval is None:
        return kwargs
    if not isinstance(reg_interval, int) or isinstance(reg_interval, bool) or reg_interval < 1:
        raise ValueError(f"lazy regularisation: reg_interval={reg_interval!r} must be an integer >= 1 or None")
    ratio = reg_interval / (reg_interval + 1)
    if "lr" in kwargs:
        kwargs.lr = kwargs.lr * ratio
    if "betas" in kwargs:
        kwargs.betas = tuple(beta ** ratio for beta in kwargs.betas)
    return kwargs


def build_phases(name: str, module: torch.nn.Module, opt_kwargs: dict[str, Any], reg_interval: Optional[int],
                 params: Optional[Iterable[torch.Tensor]] = None) -> list[Phase]:
    """[<name>main (interval 1), <name>reg (interval I)] sharing one corrected optimiser, or [<name>both].

    `opt_kwargs` holds `class_name` (e.g. 'torch.optim.Adam') plus the optimiser's arguments;
    `params` defaults to `module.parameters()`.
    """
    if "class_name" not in opt_kwargs:
        raise ValueError(f"build_phases({name!r}): opt_kwargs needs a 'class_name' such as 'torch.optim.Adam'")
    params = list(module.parameters() if params is None else params)
    if reg_interval is None:
        opt = dnnlib.util.construct_class_by_name(params=params, **lazy_reg_opt_kwargs(opt_kwargs, None))
        return [Phase(name=name + "both", module=module, opt=opt, interval=1)]
    opt = dnnlib.util.construct_class_by_name(params=params, **lazy_reg_opt_kwargs(opt_kwargs, reg_interval))
    return [Phase(name=name + "main", module=module, opt=opt, interval=1),
            Phase(name=name + "reg", module=module, opt=opt, interval=reg_interval)]

"""Projection heads on the discriminator's 4x4 features, and the momentum (key) copies.

`ProjectionMLP`: global-average-pool the [N, C, 4, 4] map of D's last block (before the
epilogue), Linear(C, 512) -> ReLU -> Linear(512, 128), L2-normalise.
`MomentumProjectionHead`: a trainable query MLP plus a key MLP that follows it by EMA
(momentum 0.999), updated on every head call as in the reference code.
`make_momentum_copy` (+ torch_utils.misc.ema_update_): D_ema, the key copy of the whole discriminator.
`make_head_optimizer`: Adam with a network's settings and the lazy-regularisation correction.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F

from torch_utils.misc import ema_update_
from training.phases import lazy_reg_opt_kwargs


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C] by global average pooling; [N, C] passes through."""
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features


class ProjectionMLP(torch.nn.Module):
    """GAP -> Linear -> ReLU -> Linear -> L2 normalisation."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_dim, hidden_dim)
        self.fc2 = torch.nn.Linear(hidden_dim, out_dim)

    def forward(self, features: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """`frozen`: gradients reach the input but not the MLP's own parameters (G-phase use)."""
        params = [p.detach() if frozen else p for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)]
        x = pool_features(features).to(torch.float32)
        x = F.relu(F.linear(x, params[0], params[1]))
        return F.normalize(F.linear(x, params[2], params[3]), dim=1)


class MomentumProjectionHead(torch.nn.Module):
    """Query MLP (trained) and key MLP (EMA of the query MLP, never trained)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, momentum: float = 0.999):
        super().__init__()
        self.momentum = float(momentum)
        self.query_mlp = ProjectionMLP(in_dim, hidden_dim, out_dim)
        self.key_mlp = make_momentum_copy(self.query_mlp)
        self.out_dim = out_dim

    def forward(self, query_features: torch.Tensor, key_features: Optional[torch.Tensor] = None,
                frozen: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One head call: EMA-update the key MLP, project the queries and (no-grad) the keys."""
        ema_update_(self.key_mlp, self.query_mlp, self.momentum)
        query = self.query_mlp(query_features, frozen=frozen)
        key = None if key_features is None else self.project_keys(key_features)
        return query, key

    @torch.no_grad()
    def project_keys(self, features: torch.Tensor) -> torch.Tensor:
        return self.key_mlp(features.detach())


# ----------------------------------------------------------------------------
# Momentum copies.

def make_momentum_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy that never receives gradients."""
    return copy.deepcopy(module).requires_grad_(False)


def infer_feature_channels(D: torch.nn.Module) -> int:
    """Channels of D's 4x4 feature map: the epilogue's input width (ch(4))."""
    epilogue = getattr(D, "b4", None)
    channels = getattr(epilogue, "in_channels", None)
    if channels is None and epilogue is not None and hasattr(epilogue, "conv"):
        channels = epilogue.conv.weight.shape[0]
    if channels is None:
        raise ValueError("contrastive head: cannot infer D's feature channels (no D.b4.in_channels); "
                         "pass feature_channels explicitly")
    return int(channels)


# ----------------------------------------------------------------------------
# Head optimiser.

_HEAD_ADAM_DEFAULTS = dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8)  # StyleGAN2's G/D Adam settings


def make_head_optimizer(params: Iterable[torch.nn.Parameter], opt_kwargs: dict[str, Any],
                        reg_interval: Optional[int]) -> torch.optim.Adam:
    """Adam with the network's lr, betas and eps (`opt_kwargs`), corrected for lazy regularisation exactly as
    that network's own optimiser is (training.phases.lazy_reg_opt_kwargs: lr * r, betas ** r, r = I / (I + 1))."""
    given = {key: opt_kwargs[key] for key in _HEAD_ADAM_DEFAULTS if key in opt_kwargs}
    corrected = lazy_reg_opt_kwargs(dict(_HEAD_ADAM_DEFAULTS, **given), reg_interval or None)
    lr, betas, eps = float(corrected.lr), corrected.betas, float(corrected.eps)
    return torch.optim.Adam(list(params), lr=lr, betas=betas, eps=eps, foreach=True)  # = per-tensor Adam, faster

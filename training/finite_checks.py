"""Non-finite is an error: the check generate.py, style_mixing.py, projector.py, calc_metrics.py and
scripts/latent_continuity.py share.

A snapshot whose weights hold NaN or Inf (diverged training, edited bytes) renders all-black images and
meaningless metric values while every tool exits 0. These helpers refuse such a network, its first batch of
non-finite output, and non-finite --trunc / --projected-w values, with one line naming the file or option.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

DAMAGED_FIX = "the network is damaged (diverged training or edited bytes); use an earlier, intact snapshot"
PROBE_SEED = 0


class NonFiniteError(ValueError):
    """A network, output or value that is NaN or infinite; str() is the one line to print."""


def require_finite_network(module: torch.nn.Module, source: str) -> None:
    """Every parameter and buffer finite, else NonFiniteError naming the first damaged tensors."""
    damaged = []
    for name, tensor in _named_tensors(module):
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor.detach())).sum())
            if bad:
                damaged.append(f"{bad} in {name}")
    if damaged:
        more = f" and {len(damaged) - 3} more tensors" if len(damaged) > 3 else ""
        raise NonFiniteError(f"{source}: the network holds non-finite values ({', '.join(damaged[:3])}{more}); "
                             + DAMAGED_FIX)


def require_finite_output(images: torch.Tensor, source: str) -> None:
    """A batch the network produced: all finite, else NonFiniteError (nothing has been written yet)."""
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).sum())
        raise NonFiniteError(f"{source}: the network produces non-finite images ({bad} of {images.numel()} values "
                             f"in the first batch); " + DAMAGED_FIX)


@torch.no_grad()
def require_finite_generator(G: Any, source: str) -> None:
    """A generator's weights, then one probe image (fixed latent, class 0 when conditional), all finite."""
    require_finite_network(G, source)
    device = next(iter(G.parameters())).device if any(True for _ in G.parameters()) else torch.device("cpu")
    z = torch.from_numpy(np.random.RandomState(PROBE_SEED).randn(1, G.z_dim)).float().to(device)
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim:
        c[0, 0] = 1
    require_finite_output(G(z, c, noise_mode="const"), source)


def require_finite_value(value: float, option: str) -> float:
    """A command-line number such as --trunc: finite, else NonFiniteError naming the option."""
    if not math.isfinite(value):
        raise NonFiniteError(f"{option}={value}: must be a finite number (e.g. {option}=0.7)")
    return value


def count_non_finite(array: Any) -> tuple[int, int]:
    """(NaN or infinite values, all values) of an array read from a file, e.g. --projected-w's 'w'."""
    values = torch.as_tensor(array)
    return int((~torch.isfinite(values)).sum()), values.numel()


def _named_tensors(module: torch.nn.Module):
    yield from module.named_parameters()
    yield from module.named_buffers()

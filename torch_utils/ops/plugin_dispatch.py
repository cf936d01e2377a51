"""Choose between a fused CUDA plugin and the pure-PyTorch reference path.

Policy (shared by bias_act and upfirdn2d):
- impl='ref', or FAKECLR_OPS=ref in the environment: always the reference path.
- FAKECLR_OPS=cuda: the plugin must be used; any reason it cannot be is an error.
- otherwise (impl='cuda'): CPU tensors silently take the reference path; CUDA tensors
  try the plugin once per op, and on failure warn once with the reason and fall back.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Callable

import torch

ENV_VAR = "FAKECLR_OPS"
_ENV_MODES = ("", "auto", "ref", "cuda")
_IMPLS = ("ref", "cuda")

# Per-op outcome of the one build attempt: the module, or the failure reason (str).
# A process-wide cache is unavoidable: the build is expensive and must happen once.
_plugin_outcomes: dict[str, ModuleType | str] = {}


def forced_mode() -> str:
    """The FAKECLR_OPS setting ('' when unset); raises on an unknown value."""
    mode = os.environ.get(ENV_VAR, "").strip().lower()
    if mode not in _ENV_MODES:
        raise ValueError(f"{ENV_VAR}={mode!r} is not understood; use 'ref', 'cuda' or leave it unset")
    return mode


def check_impl(impl: str, op_name: str) -> None:
    if impl not in _IMPLS:
        raise ValueError(f"{op_name}: impl={impl!r} is not supported; use 'cuda' or 'ref'")


def select_plugin(x: torch.Tensor, impl: str, op_name: str, loader: Callable[[], ModuleType]) -> ModuleType | None:
    """The compiled plugin to use for tensor `x`, or None for the reference path."""
    check_impl(impl, op_name)
    mode = forced_mode()
    if mode == "ref" or (impl == "ref" and mode != "cuda"):
        return None
    if mode == "cuda":
        if not x.is_cuda:
            raise RuntimeError(f"{op_name}: {ENV_VAR}=cuda forces the CUDA plugin, but the input is on {x.device}; "
                               f"move it to a GPU or unset {ENV_VAR}")
        return _load(op_name, loader, strict=True)
    if not x.is_cuda:
        return None
    return _load(op_name, loader, strict=False)


def _load(op_name: str, loader: Callable[[], ModuleType], strict: bool) -> ModuleType | None:
    outcome = _plugin_outcomes.get(op_name)
    if outcome is None:
        try:
            outcome = loader()
        except Exception as error:  # noqa: BLE001 -- any build/import failure means "use the reference path"
            outcome = f"{type(error).__name__}: {error}".strip()
            if not strict:
                warnings.warn(f"{op_name}: the CUDA plugin is unavailable ({outcome.splitlines()[0]}); "
                              f"using the slower reference implementation. Set {ENV_VAR}=ref to silence this.",
                              RuntimeWarning, stacklevel=3)
        _plugin_outcomes[op_name] = outcome
    if isinstance(outcome, str):
        if strict:
            raise RuntimeError(f"{op_name}: {ENV_VAR}=cuda but the CUDA plugin could not be loaded: {outcome}")
        return None
    return outcome


def forget_plugins() -> None:
    """Drop cached build outcomes (tests use it to exercise the warning path)."""
    _plugin_outcomes.clear()

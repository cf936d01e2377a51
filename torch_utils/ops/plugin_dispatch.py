"""Choose between a fused CUDA plugin and the pure-PyTorch reference path.

Policy (shared by bias_act and upfirdn2d):
- impl='ref', or FAKECLR_OPS=ref in the environment: always the reference path.
- FAKECLR_OPS=cuda: the plugin must be used; any reason it cannot be is an error.
- otherwise (impl='cuda'): CPU tensors silently take the reference path; CUDA tensors
  try the plugin once per op, and on failure warn once with the reason and fall back.

A plugin that loads is first checked against the reference path (plugin_selfcheck: forward and
gradients, float32 and float16, a few small inputs); one that disagrees counts as a failure:
a warning and the reference path, or an error under FAKECLR_OPS=cuda.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Callable, Optional

import torch

from torch_utils.ops.plugin_selfcheck import CheckResult

ENV_VAR = "FAKECLR_OPS"
_ENV_MODES = ("", "auto", "ref", "cuda")
_IMPLS = ("ref", "cuda")

# Per-op outcome of the one build attempt: the module, or the failure reason (str).
# A process-wide cache is unavoidable: the build is expensive and must happen once.
_plugin_outcomes: dict[str, ModuleType | str] = {}
_check_results: dict[str, CheckResult] = {}  # per-op self-check outcome, for reports (benchmarks/gpu_suite.py)

SelfCheck = Callable[[ModuleType, torch.device], CheckResult]


def forced_mode() -> str:
    """The FAKECLR_OPS setting ('' when unset); raises on an unknown value."""
    mode = os.environ.get(ENV_VAR, "").strip().lower()
    if mode not in _ENV_MODES:
        raise ValueError(f"{ENV_VAR}={mode!r} is not understood; use 'ref', 'cuda' or leave it unset")
    return mode


def check_impl(impl: str, op_name: str) -> None:
    if impl not in _IMPLS:
        raise ValueError(f"{op_name}: impl={impl!r} is not supported; use 'cuda' or 'ref'")


def select_plugin(x: torch.Tensor, impl: str, op_name: str, loader: Callable[[], ModuleType],
                  self_check: Optional[SelfCheck] = None) -> ModuleType | None:
    """The compiled plugin to use for tensor `x`, or None for the reference path.

    `self_check(plugin, device)` vets a freshly loaded plugin once (see the module doc).
    """
    check_impl(impl, op_name)
    mode = forced_mode()
    if mode == "ref" or (impl == "ref" and mode != "cuda"):
        return None
    if mode == "cuda":
        if not x.is_cuda:
            raise RuntimeError(f"{op_name}: {ENV_VAR}=cuda forces the CUDA plugin, but the input is on {x.device}; "
                               f"move it to a GPU or unset {ENV_VAR}")
        return _load(op_name, loader, self_check, x.device, strict=True)
    if not x.is_cuda:
        return None
    return _load(op_name, loader, self_check, x.device, strict=False)


def _load(op_name: str, loader: Callable[[], ModuleType], self_check: Optional[SelfCheck], device: torch.device,
          strict: bool) -> ModuleType | None:
    outcome = _plugin_outcomes.get(op_name)
    if outcome is None:
        outcome = _build(op_name, loader, strict)
        if not isinstance(outcome, str) and self_check is not None:
            outcome = _vet(op_name, outcome, self_check, device, strict)
        _plugin_outcomes[op_name] = outcome
    if isinstance(outcome, str):
        if strict:
            raise RuntimeError(f"{op_name}: {ENV_VAR}=cuda but the CUDA plugin {outcome}")
        return None
    return outcome


def _build(op_name: str, loader: Callable[[], ModuleType], strict: bool) -> ModuleType | str:
    """The loaded plugin, or why it could not be loaded (warned about unless strict)."""
    try:
        return loader()
    except Exception as error:  # noqa: BLE001 -- any build/import failure means "use the reference path"
        reason = f"{type(error).__name__}: {error}".strip()
        if not strict:
            warnings.warn(f"{op_name}: the CUDA plugin is unavailable ({reason.splitlines()[0]}); "
                          f"using the slower reference implementation. Set {ENV_VAR}=ref to silence this.",
                          RuntimeWarning, stacklevel=4)
        return f"could not be loaded: {reason}"


def _vet(op_name: str, plugin: ModuleType, self_check: SelfCheck, device: torch.device,
         strict: bool) -> ModuleType | str:
    """`plugin` if it agrees with the reference path, else the disagreement (warned about unless strict)."""
    result = self_check(plugin, device)
    _check_results[op_name] = result
    if result.passed:
        return plugin
    if not strict:
        warnings.warn(f"{op_name}: the CUDA plugin disagrees with the reference path ({result.summary()}); "
                      f"using the slower reference implementation. Please report this with your GPU, CUDA and "
                      f"torch versions; set {ENV_VAR}=ref to silence this.", RuntimeWarning, stacklevel=4)
    return f"failed its self-check against the reference path: {result.summary()}"


def self_check_results() -> dict[str, CheckResult]:
    """The self-check of every plugin loaded so far in this process (op name -> result)."""
    return dict(_check_results)


def forget_plugins() -> None:
    """Drop cached build and self-check outcomes (tests use it to exercise the warning path)."""
    _plugin_outcomes.clear()
    _check_results.clear()

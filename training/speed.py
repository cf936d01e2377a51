"""Speed switches of the training loop, as small functions the loop calls (see docs/performance.md).

Every switch defaults to the plain behaviour; each one is a training option (train.py flag):

| option            | train.py flag       | default | what it does                                                     |
|-------------------|---------------------|---------|------------------------------------------------------------------|
| `bf16`            | `--bf16`            | False   | bfloat16 autocast around the G and D forward passes of Gmain/Dmain |
| `channels_last`   | `--channels-last`   | False   | NHWC weights and activations in every G/D block (not only FP16)  |
| `compile`         | `--compile`         | False   | torch.compile of G mapping, G synthesis and D for Gmain/Dmain     |
| `compile_backend` | `--compile-backend` | inductor| the torch.compile backend ('aot_eager' for tests)                |
| `fused_adam`      | `--fused-adam`      | False   | torch.optim.Adam(fused=True) for G and D (where torch supports it) |

The regularisation phases (Greg: path length, Dreg: R1) differentiate twice. torch.compile does
not support double backward and bf16 would degrade those small gradient norms, so both switches
apply to the main phases only; Greg/Dreg (and the unsplit Gboth/Dboth) always run eager in FP32.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any, Callable, ContextManager, Optional

import torch

import dnnlib
from training.defaults import SPEED_DEFAULTS

MAIN_PHASES = ("Gmain", "Dmain")
_NETWORK_NAMES = ("G_mapping", "G_synthesis", "D")  # the StyleGAN2Loss attributes that hold the networks


def speed_options(o: dict) -> dnnlib.EasyDict:
    """The speed switches of a training-options dict, with defaults for the absent ones."""
    return dnnlib.EasyDict({key: o.get(key, default) for key, default in SPEED_DEFAULTS.items()})


# ----------------------------------------------------------------------------
# cuDNN benchmark and TF32.

def configure_backends(device: torch.device, cudnn_benchmark: bool, allow_tf32: bool) -> None:
    """Set cuDNN benchmark and TF32 (matmul + cuDNN) for this process; nothing to set on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    torch.backends.cuda.matmul.allow_tf32 = bool(allow_tf32)
    torch.backends.cudnn.allow_tf32 = bool(allow_tf32)


# ----------------------------------------------------------------------------
# channels_last for the whole networks.

def apply_channels_last(*modules: Optional[torch.nn.Module]) -> None:
    """NHWC for every 4-D parameter/buffer and every G/D block's activations (in place).

    Call before the optimisers are built (their state copies the parameters' layout). Blocks read
    `all_channels_last` (training/networks.py); the D epilogue and the images stay NCHW.
    """
    for module in modules:
        if module is None:
            continue
        for sub in module.modules():
            if hasattr(type(sub), "all_channels_last"):
                sub.all_channels_last = True
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                if tensor.ndim == 4:
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------
# Fused Adam.

@functools.lru_cache(maxsize=None)  # a probe step per device is enough (G and D both ask)
def fused_adam_supported(device: torch.device) -> bool:
    """Whether torch.optim.Adam(fused=True) works for float32 parameters on `device`."""
    try:
        param = torch.nn.Parameter(torch.zeros(2, device=device))
        param.grad = torch.ones(2, device=device)
        torch.optim.Adam([param], lr=0.1, fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def optimizer_kwargs(opt_kwargs: dict[str, Any], fused_adam: bool, device: torch.device) -> dnnlib.EasyDict:
    """`opt_kwargs` with fused=True for torch.optim.Adam when asked for and supported (warns otherwise),
    else with foreach=True (bit-identical to the default, faster on the CPU)."""
    kwargs = dnnlib.EasyDict(opt_kwargs)
    if not fused_adam:
        if kwargs.get("class_name") == "torch.optim.Adam" and "foreach" not in kwargs:
            # torch defaults to the per-tensor loop for CPU tensors; the multi-tensor (foreach) Adam gives
            # bit-identical parameters and halves the optimiser's time (docs/performance.md). CUDA: its default.
            kwargs.foreach = True
        return kwargs
    if kwargs.get("class_name") != "torch.optim.Adam":
        _warn_once(f"--fused-adam: the optimiser is {kwargs.get('class_name')}, not torch.optim.Adam; ignored")
    elif not fused_adam_supported(device):
        _warn_once(f"--fused-adam: this torch build has no fused Adam on {device.type}; using the default Adam")
    else:
        kwargs.fused = True
    return kwargs


# ----------------------------------------------------------------------------
# bf16 autocast and torch.compile, per phase.

def autocast_factory(device: torch.device, enabled: bool) -> Callable[[], ContextManager]:
    """A factory of bf16 autocast contexts for `device` (nullcontext when disabled)."""
    if not enabled:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class SafeCompiled:
    """torch.compile(module) that falls back to the eager module (one warning) if compiling fails."""

    def __init__(self, module: torch.nn.Module, backend: str = "inductor", **compile_kwargs: Any):
        self.module = module
        self.backend = backend
        self.failed: Optional[str] = None
        try:
            self.compiled = torch.compile(module, backend=backend, **compile_kwargs)
        except Exception as error:  # noqa: BLE001 -- e.g. no compile support in this build
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        self.failed = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        _warn_once(f"--compile: torch.compile of {type(self.module).__name__} (backend {self.backend}) failed "
                   f"({self.failed}); running it eager")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 -- compile errors surface at the first call
                self._fail(error)
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # e.g. num_ws, c_dim, ...
        return getattr(self.__dict__["module"], name)


class PhaseSpeed:
    """Puts the compiled networks and the bf16 autocast into the loss for Gmain/Dmain, eager FP32 otherwise.

    The loss must expose `G_mapping`, `G_synthesis`, `D` and `use_networks` (StyleGAN2Loss does);
    other loss classes simply get no compile/autocast.
    """

    def __init__(self, loss: Any, device: torch.device, bf16: bool = False, compile: bool = False,
                 compile_backend: str = "inductor"):
        self.loss = loss
        self.supported = all(hasattr(loss, name) for name in (*_NETWORK_NAMES, "use_networks"))
        self.eager = {name: getattr(loss, name) for name in _NETWORK_NAMES} if self.supported else {}
        self.fast = dict(self.eager)
        self.autocast = autocast_factory(device, bf16)
        self.active = self.supported and (bf16 or compile)
        if (bf16 or compile) and not self.supported:
            _warn_once(f"--bf16/--compile: the loss {type(loss).__name__} does not expose its networks; ignored")
        if compile and self.supported:
            self.fast = {name: SafeCompiled(module, backend=compile_backend) for name, module in self.eager.items()}

    def enter(self, phase_name: str) -> None:
        """Configure the loss for one phase (call before its accumulation rounds)."""
        if not self.active:
            return
        fast = phase_name in MAIN_PHASES
        self.loss.use_networks(self.fast if fast else self.eager, self.autocast if fast else contextlib.nullcontext)


# ----------------------------------------------------------------------------
# Pinned, non-blocking host-to-device copies.

def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor -> device without a host-device sync (pinned staging on CUDA)."""
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


# ----------------------------------------------------------------------------

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

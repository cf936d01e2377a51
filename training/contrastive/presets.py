"""`--method` presets and the resolution of every contrastive-method option.

    ada        StyleGAN2-ADA (adaptive p)
    adalinear  StyleGAN2-ADA with the linear p ramp (ADA-Linear)
    insgen     InsGen: real + fake instance heads, fixed latent noise 0.15 (InsGen code behaviour)
    fakeclr    FakeCLR as the paper describes it: ADA-Linear + fake-only head on perturbed fakes,
               relative latent noise, forgetting factor, diversity-aware (shrinking) queue
    contragan  ADA + ContraGAN's conditional contrastive (2C) loss; needs labels

`resolve_method` applies, in order: the method preset, the FakeCLR code-compatibility preset,
the upstream FakeCLR / InsGen flags (--no_insgen, --no_fakeclr, --rqs, --fqs, --no_cl_on_g,
--ada_linear) and explicit option overrides; then fills dataset-dependent defaults and checks
every value. `training.contrastive.build.build_hook` turns them into the loss hook.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional

from training.contrastive.losses import FORGETTING_MODES
from training.contrastive.noise import NOISE_MODES
from training.contrastive.queue import QUEUE_SCHEDULES

METHODS = ("ada", "adalinear", "insgen", "fakeclr", "contragan")
ENQUEUE_MODES = ("key", "query_momentum")
COND_LOSSES = ("none", "2c")
UPSTREAM_FLAGS = ("no_insgen", "no_fakeclr", "no_cl_on_g")  # mapped onto the options below
DEFAULT_NOISE_SCALE = {"relative": 0.1, "fixed": 0.15}
QUEUE_FRACTION = 0.05  # default queue length: 5 % of the dataset (x2 with --mirror)


@dataclasses.dataclass
class MethodOptions:
    """Every hyper-parameter of the methods; defaults are the spec's (see docs/methods.md)."""

    method: str = "ada"
    ada_linear: bool = False             # linear p ramp instead of the adaptive controller
    fake_head: bool = False              # fake-instance head (FakeCLR, InsGen)
    real_head: bool = False              # real-instance head (InsGen)
    cond_loss: str = "none"              # 'none' | '2c' (ContraGAN)
    code_compat: bool = False            # --fakeclr-code-compat was given
    # instance discrimination
    lambda_D: float = 1.0                # lambda^f: fake contrastive term on D
    lambda_real: float = 1.0             # lambda^r: real contrastive term on D (InsGen)
    lambda_G: float = 0.1                # fake contrastive term on G
    cl_on_g: bool = True                 # upstream --no_cl_on_g sets False
    tau: float = 0.2                     # InfoNCE temperature
    head_hidden_dim: int = 512
    head_out_dim: int = 128
    head_momentum: float = 0.999         # key-MLP EMA
    d_ema_momentum: float = 0.999        # D_ema EMA
    fqs: Optional[int] = None            # fake queue length; None: 5 % of the data (x2 mirror), > batch
    rqs: Optional[int] = None            # real queue length; same default
    fqs_schedule: str = "fixed"          # 'fixed' | 'linear' (diversity-aware queue)
    fqs_min: Optional[int] = None        # floor of the linear schedule; None: max(fqs // 2, batch + 1)
    forgetting_mode: str = "paper"       # 'paper' | 'code_constant' | 'off'
    tau_m: float = 0.01                  # forgetting-factor temperature
    g_cl_forgetting: bool = False        # apply the forgetting term on G's side too (code does)
    noise_mode: str = "relative"         # 'relative' | 'fixed'
    noise_scale: Optional[float] = None  # None: 0.1 (relative, l1) or 0.15 (fixed)
    noise_clamp: Optional[float] = 3.0   # clamp on |z_j| for relative noise; None: paper-literal
    cl_independent_mixing: bool = False  # fresh style-mixing draw for the perturbed key (code)
    enqueue: str = "key"                 # 'key' (FakeCLR) | 'query_momentum' (InsGen)
    # ContraGAN 2C
    lambda_2c: float = 1.0
    tau_2c: float = 1.0
    d_embed_dim: int = 512

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for training_options.json and snapshots."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MethodOptions":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"method options: unknown key(s) {', '.join(unknown)} in the saved options; "
                             "was the snapshot written by a newer version?")
        return cls(**values)


PRESETS: dict[str, dict[str, Any]] = {
    "ada": {},
    "adalinear": {"ada_linear": True},
    "insgen": {"fake_head": True, "real_head": True, "noise_mode": "fixed", "noise_clamp": None,
               "forgetting_mode": "off", "enqueue": "query_momentum", "cl_independent_mixing": True},
    "fakeclr": {"ada_linear": True, "fake_head": True, "fqs_schedule": "linear", "forgetting_mode": "paper",
                "noise_mode": "relative", "enqueue": "key"},
    "contragan": {"cond_loss": "2c"},
}

# What the released FakeCLR code computes where it differs from the paper (docs/methods.md).
FAKECLR_CODE_COMPAT: dict[str, Any] = {"forgetting_mode": "code_constant", "g_cl_forgetting": True,
                                       "cl_independent_mixing": True, "fqs_schedule": "fixed", "enqueue": "key"}


def resolve_method(method: str, overrides: Optional[dict[str, Any]] = None, *, dataset_size: int,
                   mirror: bool, batch: int, code_compat: bool = False,
                   warn: Callable[[str], None] = lambda msg: warnings.warn(msg, stacklevel=3)) -> MethodOptions:
    """Options for `method` after presets, upstream flags and `overrides`.

    None values in `overrides` mean "not given" (so click defaults of None pass through);
    `noise_clamp='none'` selects the paper-literal unclamped noise.
    """
    if method not in METHODS:
        raise ValueError(f"--method: unknown method {method!r}; use one of {', '.join(METHODS)}")
    if code_compat and method != "fakeclr":
        raise ValueError("--fakeclr-code-compat: only meaningful with --method=fakeclr")
    values = dict(PRESETS[method], method=method, code_compat=code_compat)
    if code_compat:
        values.update(FAKECLR_CODE_COMPAT)
    values.update(_translate_upstream_flags({k: v for k, v in (overrides or {}).items() if v is not None}))
    opts = MethodOptions(**values)
    _fill_defaults(opts, dataset_size, mirror, batch, warn)
    _validate(opts)
    return opts


def _translate_upstream_flags(overrides: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(MethodOptions)} - {"method", "code_compat"}
    values = {}
    for name, value in overrides.items():
        if name in ("no_insgen", "no_fakeclr"):
            if value:
                values.update(fake_head=False, real_head=False)
        elif name == "no_cl_on_g":
            values["cl_on_g"] = not value
        elif name == "noise_clamp" and str(value).lower() in ("none", "off"):
            values[name] = None  # paper-literal: no clamp (a plain None means "option not given")
        elif name in known:
            values[name] = value
        else:
            raise ValueError(f"--{name}: not a method option; known: {', '.join(sorted(known | set(UPSTREAM_FLAGS)))}")
    return values


def default_queue_length(dataset_size: int, mirror: bool) -> int:
    """floor(5 % of the dataset), doubled with x-flip mirroring (the reference code's rule)."""
    return int(QUEUE_FRACTION * dataset_size) * (2 if mirror else 1)


def _clamp_queue(name: str, value: int, batch: int, explicit: bool, warn) -> int:
    if value > batch:
        return value
    origin = f"--{name}={value}" if explicit else f"the default {name} ({value}, 5 % of the data)"
    warn(f"{origin} is not longer than the global batch ({batch}); using {batch + 1} so the queue keeps "
         f"negatives from earlier iterations (set --{name} > --batch to silence this)")
    return batch + 1


def _fill_defaults(opts: MethodOptions, dataset_size: int, mirror: bool, batch: int, warn) -> None:
    if opts.noise_scale is None:
        opts.noise_scale = DEFAULT_NOISE_SCALE.get(opts.noise_mode, 0.1)
    if not (opts.fake_head or opts.real_head):
        return
    default = default_queue_length(dataset_size, mirror)
    if opts.fake_head:
        opts.fqs = _clamp_queue("fqs", opts.fqs if opts.fqs is not None else default, batch, opts.fqs is not None, warn)
        if opts.fqs_min is None:
            opts.fqs_min = min(opts.fqs, max(opts.fqs // 2, batch + 1))
        elif opts.fqs_min > opts.fqs:
            raise ValueError(f"--fqs_min={opts.fqs_min}: must not exceed --fqs={opts.fqs}")
        else:
            opts.fqs_min = _clamp_queue("fqs_min", opts.fqs_min, batch, True, warn)
    if opts.real_head:
        opts.rqs = _clamp_queue("rqs", opts.rqs if opts.rqs is not None else default, batch, opts.rqs is not None, warn)


def _validate(opts: MethodOptions) -> None:
    choices = {"fqs_schedule": QUEUE_SCHEDULES, "forgetting_mode": FORGETTING_MODES, "noise_mode": NOISE_MODES,
               "enqueue": ENQUEUE_MODES, "cond_loss": COND_LOSSES}
    for name, allowed in choices.items():
        if getattr(opts, name) not in allowed:
            raise ValueError(f"--{name}={getattr(opts, name)!r}: use one of {', '.join(allowed)}")
    for name in ("tau", "tau_m", "tau_2c", "noise_scale"):
        if not getattr(opts, name) > 0:
            raise ValueError(f"--{name}={getattr(opts, name)}: must be > 0")
    for name in ("lambda_D", "lambda_real", "lambda_G", "lambda_2c"):
        if not getattr(opts, name) >= 0:
            raise ValueError(f"--{name}={getattr(opts, name)}: must be >= 0 (0 disables the term)")
    for name in ("head_momentum", "d_ema_momentum"):
        if not 0 <= getattr(opts, name) < 1:
            raise ValueError(f"--{name}={getattr(opts, name)}: must lie in [0, 1)")
    for name in ("head_hidden_dim", "head_out_dim", "d_embed_dim"):
        if int(getattr(opts, name)) < 1:
            raise ValueError(f"--{name}={getattr(opts, name)}: must be a positive integer")
    if opts.noise_clamp is not None and not opts.noise_clamp > 0:
        raise ValueError(f"--noise_clamp={opts.noise_clamp}: must be > 0 (or None for no clamp)")


def contrastive_enabled(opts: MethodOptions) -> bool:
    """Whether any contrastive term is active (otherwise the run is plain ADA / ADA-Linear)."""
    instance = (opts.fake_head and (opts.lambda_D > 0 or (opts.cl_on_g and opts.lambda_G > 0))) or \
               (opts.real_head and opts.lambda_real > 0)
    return instance or (opts.cond_loss == "2c" and opts.lambda_2c > 0)

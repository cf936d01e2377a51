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
every value. `training.method_stack.build_method` turns them into the run's method.
Method names and presets come from the registry (training.method_registry).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional

from training.contrastive.losses import FORGETTING_MODES
from training.contrastive.noise import NOISE_MODES
from training.contrastive.queue import QUEUE_SCHEDULES
from training.method_registry import addon_option_fields, method_class, split_method
from training.checkpoint import LEGACY_METHOD_FIELDS

ENQUEUE_MODES = ("key", "query_momentum")
COND_LOSSES = ("none", "2c")
QUERY_VIEWS = ("shared", "independent")
CONTRAGAN_MODES = ("studiogan", "projection")
UPSTREAM_FLAGS = ("no_insgen", "no_fakeclr", "no_cl_on_g", "forgetting")  # mapped onto the options below
# --forgetting=paper|code|off names MethodOptions.forgetting_mode; the field's own values are accepted too.
FORGETTING_CHOICES = {"paper": "paper", "code": "code_constant", "code_constant": "code_constant", "off": "off"}
DEFAULT_NOISE_SCALE = {"relative": 0.1, "fixed": 0.15}
QUEUE_FRACTION = 0.05  # default queue length: 5 % of the dataset (x2 with --mirror)
QUEUE_START_BATCHES = 4  # a shrinking queue starts at >= 4 global batches, so it can shrink on few-shot data


@dataclasses.dataclass
class MethodOptions:
    """Every hyper-parameter of the methods; defaults and their sources in docs/methods.md."""

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
    fqs_min: Optional[int] = None        # floor of the linear schedule; None: see default_queue_schedule
    forgetting_mode: str = "paper"       # 'paper' | 'code_constant' | 'off'
    tau_m: float = 0.01                  # forgetting-factor temperature
    g_cl_forgetting: bool = False        # apply the forgetting term on G's side too (code does)
    noise_mode: str = "relative"         # 'relative' | 'fixed'
    noise_scale: Optional[float] = None  # None: 0.1 (relative, l1) or 0.15 (fixed)
    noise_clamp: Optional[float] = 3.0   # clamp on |z_j| for relative noise; None: paper-literal
    cl_independent_mixing: bool = False  # fresh style-mixing draw for the perturbed key (code)
    enqueue: str = "key"                 # 'key' (FakeCLR) | 'query_momentum' (InsGen)
    cl_query_view: str = "shared"        # 'shared': the adversarial pass's features | 'independent': a fresh T
    # ContraGAN 2C
    lambda_2c: float = 1.0
    tau_2c: float = 1.0
    d_embed_dim: int = 512
    contragan_mode: str = "studiogan"    # 'studiogan': unconditional D, 2C on the FC output | 'projection'
    # add-on name -> its options (the add-on's own dataclass, as a dict), e.g. {'lecam': {'lecam_weight': 3e-7, ...}}
    addons: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for training_options.json and snapshots."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MethodOptions":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"method options: unknown key(s) {', '.join(unknown)} in the saved options; "
                             "was the snapshot written by a newer version?")
        return cls(**{**LEGACY_METHOD_FIELDS, **values})  # older runs lack newer fields


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
    base, addons = split_method(method)
    if code_compat and base != "fakeclr":
        raise ValueError("--fakeclr-code-compat: only meaningful with --method=fakeclr")
    values = dict(method_class(base).preset, method=method, code_compat=code_compat)
    if code_compat:
        values.update(FAKECLR_CODE_COMPAT)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values["addons"] = _addon_options(addons, given)  # takes the add-ons' fields out of `given`
    values.update(_translate_upstream_flags(given))
    opts = MethodOptions(**values)
    _fill_defaults(opts, dataset_size, mirror, batch, warn)
    _validate(opts)
    return opts


def _translate_upstream_flags(overrides: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(MethodOptions)} - {"method", "code_compat"}
    values = {}
    if "forgetting" in overrides and "forgetting_mode" in overrides and \
            _forgetting_mode(overrides["forgetting"]) != FORGETTING_CHOICES.get(overrides["forgetting_mode"]):
        raise ValueError(f"--forgetting={overrides['forgetting']}: contradicts "
                         f"--forgetting_mode={overrides['forgetting_mode']}; give only one of them")
    for name, value in overrides.items():
        if name == "forgetting":
            values["forgetting_mode"] = _forgetting_mode(value)
        elif name == "forgetting_mode":  # an unknown value is reported by _validate with the field's choices
            values["forgetting_mode"] = FORGETTING_CHOICES.get(value, value)
        elif name in ("no_insgen", "no_fakeclr"):
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


def _addon_options(addons: tuple[str, ...], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each selected add-on's options, parsed (and checked) once by its dataclass; an add-on's option
    given without the add-on is an error."""
    values = {}
    for name, field in addon_option_fields():
        if field.name in given and name not in addons:
            raise ValueError(f"--{field.name}: an option of the {name} add-on; add it to --method "
                             f"(e.g. --method=ada+{name})")
    for name in addons:
        options_class = method_class(name).Options
        if options_class is not None:
            fields = {f.name for f in dataclasses.fields(options_class)}
            values[name] = dataclasses.asdict(options_class(**{k: given.pop(k) for k in list(given) if k in fields}))
    return values


def _forgetting_mode(value: str) -> str:
    if value not in FORGETTING_CHOICES:
        raise ValueError(f"--forgetting={value!r}: use one of paper, code, off")
    return FORGETTING_CHOICES[value]


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


def default_queue_schedule(dataset_size: int, mirror: bool, batch: int) -> tuple[int, int]:
    """(start, end) of the shrinking fake queue when --fqs / --fqs_min are not given.

    start = max(5 % rule, 4 x global batch): on few-shot data the 5 % rule is below one batch,
    so without the multiple of the batch the queue would be clamped to batch + 1 and never shrink.
    end = max(half the 5 % rule, batch + 1): a queue always keeps negatives of an earlier iteration.
    """
    data_rule = default_queue_length(dataset_size, mirror)
    start = max(data_rule, QUEUE_START_BATCHES * batch, batch + 1)
    return start, min(start, max(data_rule // 2, batch + 1))


def _fill_defaults(opts: MethodOptions, dataset_size: int, mirror: bool, batch: int, warn) -> None:
    if opts.noise_scale is None:
        opts.noise_scale = DEFAULT_NOISE_SCALE.get(opts.noise_mode, 0.1)
    if not (opts.fake_head or opts.real_head):
        return
    default = default_queue_length(dataset_size, mirror)
    if opts.fake_head:
        _fill_fake_queue(opts, dataset_size, mirror, batch, warn)
    if opts.real_head:
        opts.rqs = _clamp_queue("rqs", opts.rqs if opts.rqs is not None else default, batch, opts.rqs is not None, warn)


def _fill_fake_queue(opts: MethodOptions, dataset_size: int, mirror: bool, batch: int, warn) -> None:
    if opts.fqs is None and opts.fqs_schedule == "linear":
        start, end = default_queue_schedule(dataset_size, mirror, batch)
        opts.fqs = start
        opts.fqs_min = end if opts.fqs_min is None else opts.fqs_min
    else:
        explicit = opts.fqs is not None
        opts.fqs = _clamp_queue("fqs", opts.fqs if explicit else default_queue_length(dataset_size, mirror),
                                batch, explicit, warn)
        if opts.fqs_min is None:
            opts.fqs_min = min(opts.fqs, max(opts.fqs // 2, batch + 1))
            return
    if opts.fqs_min > opts.fqs:
        raise ValueError(f"--fqs_min={opts.fqs_min}: must not exceed --fqs={opts.fqs}")
    opts.fqs_min = _clamp_queue("fqs_min", opts.fqs_min, batch, True, warn)


def _validate(opts: MethodOptions) -> None:
    choices = {"fqs_schedule": QUEUE_SCHEDULES, "forgetting_mode": FORGETTING_MODES, "noise_mode": NOISE_MODES,
               "enqueue": ENQUEUE_MODES, "cond_loss": COND_LOSSES, "cl_query_view": QUERY_VIEWS,
               "contragan_mode": CONTRAGAN_MODES}
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


def discriminator_label_dim(opts: MethodOptions, label_dim: int) -> int:
    """D's c_dim: 0 for StudioGAN's 2C arrangement (the label reaches D only through 2C)."""
    if opts.cond_loss == "2c" and opts.contragan_mode == "studiogan":
        return 0
    return label_dim


# ----------------------------------------------------------------------------
# What the start of a run says about the method.

# The upstream FakeCLR / InsGen flags: given without --method they are ignored here (or, for --ada_linear,
# give ADA-Linear), while in the FakeCLR / InsGen repositories the same command trains FakeCLR / InsGen.
# Any other method option given without --method is named too.
CONTRASTIVE_ONLY_FLAGS = ("ada_linear", "fqs", "rqs", "no_cl_on_g", "no_insgen", "no_fakeclr")


def implicit_method_note(method_given: Optional[str], overrides: dict[str, Any], opts: MethodOptions) -> Optional[str]:
    """One line when FakeCLR / InsGen flags come without --method (so no contrastive head trains)."""
    if method_given is not None:
        return None
    given = [name for name, value in overrides.items() if value is not None]  # every method option counts
    flags = [name for name in CONTRASTIVE_ONLY_FLAGS if name in given] + \
        sorted(name for name in given if name not in CONTRASTIVE_ONLY_FLAGS)
    if not flags:
        return None
    runs = "ADA-Linear" if opts.ada_linear else "ADA"
    given = " ".join(f"--{name}" for name in flags)
    return (f"Method: {runs} without a contrastive head ({given} given without --method; the default --method is ada); "
            "to train FakeCLR add --method=fakeclr (InsGen: --method=insgen)")


def describe_method(opts: MethodOptions, total_kimg: float) -> list[str]:
    """The status block's method lines: the method and its key settings."""
    augment = "ADA-Linear p ramp" if opts.ada_linear else "adaptive p"
    if not contrastive_enabled(opts):
        return [f"{opts.method} ({augment}, no contrastive term)"] + addon_lines(opts)
    lines = [f"{opts.method} ({augment})"]
    if opts.fake_head:
        lines.append(f"fake head: lambda_D {opts.lambda_D:g}, lambda_G {opts.lambda_G if opts.cl_on_g else 0:g}, "
                     f"tau {opts.tau:g}, query view {opts.cl_query_view}, enqueue {opts.enqueue}")
        lines.append(fake_queue_line(opts, total_kimg))
        forgetting = opts.forgetting_mode + (f" (tau_m {opts.tau_m:g})" if opts.forgetting_mode == "paper" else "")
        clamp = "" if opts.noise_mode != "relative" else f", clamp {opts.noise_clamp}"
        lines.append(f"forgetting factor: {forgetting}; latent noise: {opts.noise_mode} {opts.noise_scale:g}{clamp}")
    if opts.real_head:
        lines.append(f"real head: lambda_real {opts.lambda_real:g}, real queue: {opts.rqs} (fixed)")
    if opts.cond_loss == "2c":
        lines.append(f"2C: lambda_2c {opts.lambda_2c:g}, tau_2c {opts.tau_2c:g}, mode {opts.contragan_mode}")
    return lines + addon_lines(opts)


def addon_lines(opts: MethodOptions) -> list[str]:
    """e.g. 'lecam: lecam_weight 3e-07, lecam_decay 0.99'."""
    return [f"{name}: " + ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in values.items())
            for name, values in opts.addons.items()]


def fake_queue_line(opts: MethodOptions, total_kimg: float) -> str:
    """e.g. 'fake queue: 256 → 65 over 10000 kimg (linear)'."""
    if opts.fqs_schedule == "linear" and opts.fqs_min != opts.fqs:
        return f"fake queue: {opts.fqs} → {opts.fqs_min} over {total_kimg:g} kimg (linear)"
    return f"fake queue: {opts.fqs} ({opts.fqs_schedule})"

"""Documented ranges for the constructor arguments a network record stores, checked before anything is built.

A record (ours or an upstream one) names a class from a fixed list and the arguments to build it with. Those
arguments come from the file, so a forged record could ask for a 2**20 px network, 200000 mapping layers, zero
channels (a division by zero deep in a constructor) or num_fp16_res=-2**40 (a power of two with a huge exponent).
`check_init_args` binds the stored arguments to the class's signature and checks every value it can name against
the table below, and every other value against generic bounds, in time linear in the (bounded) number of values.
The ranges are documented in docs/security.md; they cover every configuration train.py and upstream write.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

MAX_RESOLUTION = 8192
RESOLUTION_NAMES = ("img_resolution", "resolution")  # a power of two in [4, MAX_RESOLUTION]

# name -> (lowest, highest) for integer arguments, inclusive.
INT_RANGES = {
    "img_channels": (1, 4), "z_dim": (0, 4096), "w_dim": (1, 4096), "c_dim": (0, 100_000), "num_ws": (1, 64),
    "num_layers": (1, 64), "channel_base": (1, 1 << 20), "channel_max": (1, 8192), "num_fp16_res": (0, 13),
    "in_channels": (0, 1 << 16), "out_channels": (1, 1 << 16), "tmp_channels": (1, 1 << 16),
    "in_features": (1, 1 << 20), "out_features": (1, 1 << 16), "embed_features": (0, 4096),
    "layer_features": (1, 4096), "cmap_dim": (0, 4096), "kernel_size": (1, 9), "up": (1, 4), "down": (1, 4),
    "first_layer_idx": (0, 1024), "freeze_layers": (0, 1024), "mbstd_group_size": (1, 4096),
    "group_size": (1, 4096), "mbstd_num_channels": (0, 64), "num_channels": (0, 64),
}
# name -> (lowest, highest) for real-valued arguments, inclusive.
FLOAT_RANGES = {"conv_clamp": (0.0, 1e6), "lr_multiplier": (1e-9, 1e3), "w_avg_beta": (0.0, 1.0)}
NONE_ALLOWED = {"num_ws", "embed_features", "layer_features", "cmap_dim", "mbstd_group_size", "group_size",
                "conv_clamp", "w_avg_beta"}
# Bounds for values the tables do not name (augmentation strengths, filter taps, architecture names).
MAX_ABS_INT = 1 << 20
MAX_ABS_FLOAT = 1e6
MAX_STRING = 64
MAX_ITEMS_PER_CONTAINER = 64
MAX_DEPTH = 6
MAX_VALUES = 2000  # shared containers are counted each time they are reached: no exponential walk


class InitArgError(ValueError):
    """Stored constructor arguments outside the documented ranges; str() is one line."""


def check_init_args(cls: type, init_args: Any, init_kwargs: Any, what: str) -> None:
    """Refuse (InitArgError) stored arguments that do not fit `cls` or leave the documented ranges."""
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
        raise InitArgError(f"{what}: the stored init arguments are not a tuple and a dict")
    base = cls.__mro__[1] if getattr(cls, "_is_persistent", False) else cls  # the class under the decorator
    walk = _Walk(what)
    walk.container(init_args)  # sizes first: binding copies the containers
    walk.container(init_kwargs)
    for key in init_kwargs:
        if not isinstance(key, str):
            raise InitArgError(f"{what}: a stored keyword argument name is a {type(key).__name__}, not a string")
    try:
        bound = inspect.signature(base).bind(*init_args, **init_kwargs)
    except TypeError as error:
        raise InitArgError(f"{what}: the stored init arguments do not fit {base.__name__} ({error})") from None
    walk.values = 0
    scope: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        walk.check(name, value, 0, scope)
    _check_consistency(scope, what)


class _Walk:
    def __init__(self, what: str):
        self.what = what
        self.values = 0

    def container(self, value: Any) -> None:
        if isinstance(value, (dict, list, tuple)) and len(value) > MAX_ITEMS_PER_CONTAINER:
            raise InitArgError(f"{self.what}: a stored init argument holds {len(value)} items (at most "
                               f"{MAX_ITEMS_PER_CONTAINER})")

    def check(self, name: str, value: Any, depth: int, scope: dict) -> None:
        self.values += 1
        if self.values > MAX_VALUES or depth > MAX_DEPTH:
            raise InitArgError(f"{self.what}: the stored init arguments are nested too deeply or hold too many "
                               f"values (at most {MAX_VALUES} values, depth {MAX_DEPTH})")
        if isinstance(value, dict):
            self.container(value)
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InitArgError(f"{self.what}: {name} has a key of type {type(key).__name__}")
                self.check(key, item, depth + 1, scope)
        elif isinstance(value, (list, tuple)):
            self.container(value)
            for item in value:
                self.check(name, item, depth + 1, {})  # list items are no named scalars (filter taps)
        else:
            _check_scalar(name, value, self.what)
            scope.setdefault(name, value)


def _check_scalar(name: str, value: Any, what: str) -> None:
    if value is None:
        if name in INT_RANGES and name not in NONE_ALLOWED or name in RESOLUTION_NAMES:
            raise InitArgError(f"{what}: {name}=None is not allowed; it must be a number")
        return
    if isinstance(value, bool):
        if name in INT_RANGES or name in FLOAT_RANGES or name in RESOLUTION_NAMES:
            raise InitArgError(f"{what}: {name}={value} must be a number, not true/false")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InitArgError(f"{what}: {name} is a string of {len(value)} characters (at most {MAX_STRING})")
        return
    if isinstance(value, numbers.Integral):
        _check_int(name, int(value), what)
        return
    if isinstance(value, numbers.Real):
        _check_float(name, float(value), what)
        return
    raise InitArgError(f"{what}: {name} is a {type(value).__name__}; init arguments must be numbers, strings, "
                       f"lists or dicts")


def _check_int(name: str, value: int, what: str) -> None:
    if name in RESOLUTION_NAMES:
        if not 4 <= value <= MAX_RESOLUTION or value & (value - 1):
            raise InitArgError(f"{what}: {name}={_short(value)} must be a power of two in [4, {MAX_RESOLUTION}]")
        return
    low, high = INT_RANGES.get(name, (-MAX_ABS_INT, MAX_ABS_INT))
    if name in FLOAT_RANGES:
        low, high = FLOAT_RANGES[name]
    if not low <= value <= high:
        raise InitArgError(f"{what}: {name}={_short(value)} is outside [{low:g}, {high:g}]")


def _check_float(name: str, value: float, what: str) -> None:
    if name in INT_RANGES or name in RESOLUTION_NAMES:
        raise InitArgError(f"{what}: {name}={value!r} must be an integer")
    low, high = FLOAT_RANGES.get(name, (-MAX_ABS_FLOAT, MAX_ABS_FLOAT))
    if not (math.isfinite(value) and low <= value <= high):
        raise InitArgError(f"{what}: {name}={value!r} is outside [{low:g}, {high:g}] or not finite")


def _check_consistency(scope: dict, what: str) -> None:
    """Every resolution of the network gets at least one channel: min(channel_base // res, channel_max) >= 1."""
    resolution = scope.get("img_resolution")
    base = scope.get("channel_base", 32768)
    if isinstance(resolution, int) and isinstance(base, int) and base // resolution < 1:
        raise InitArgError(f"{what}: channel_base={base} gives the {resolution} px layers no channels; it must be "
                           f">= img_resolution")


def _short(value: int) -> str:
    text = str(value) if abs(value) < 10 ** 30 else f"~2**{value.bit_length() - 1}"
    return ("-" if value < 0 and not text.startswith("-") else "") + text

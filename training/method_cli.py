"""train.py's method options: declared from the registry and the options dataclasses, parsed once.

Every field of training.contrastive.presets.MethodOptions and of each add-on's options dataclass
becomes an option (`--tau_m` and `--tau-m` alike); the click type comes from the field's declared
type (Optional numbers also take 'none'), the help from `metadata['help']`. The preset-level options
(--method, --ada_linear, --fqs/--rqs, --fakeclr-code-compat) and the upstream flags are declared in train.py.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import click

EXPLICIT_FIELDS = {"method", "code_compat", "ada_linear", "fqs", "rqs", "addons"}
UPSTREAM_FLAGS = ("ada_linear", "no_insgen", "no_fakeclr", "no_cl_on_g", "rqs", "fqs", "forgetting")


class OptionalNumber(click.ParamType):
    """A number, or 'none' for None (e.g. --noise_clamp=none: paper-literal, no clamp)."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = kind.__name__

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "none":
            return "none"
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a valid {self.name} (or 'none')", param, ctx)


class MethodName(click.ParamType):
    """A registered method, or a base method and add-ons joined by '+' (checked by the registry)."""

    name = "METHOD"

    def convert(self, value, param, ctx):
        from training.method_registry import split_method
        try:
            split_method(value)
        except ValueError as error:
            self.fail(str(error).removeprefix("--method: "), param, ctx)
        return value


def click_type(hint: Any) -> Any:
    """bool / str / int / float, or Optional[int | float] -> a number that also accepts 'none'."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        return OptionalNumber(args[0])
    if hint in (bool, str, int, float):
        return hint
    raise TypeError(f"method option type {hint!r}: only bool, str, int, float and Optional numbers are supported")


def _dataclass_options(cls: type, origin: str) -> list[tuple[list[str], str, Any, str]]:
    hints = typing.get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        if f.name in EXPLICIT_FIELDS:
            continue
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        help_text = f.metadata.get("help", "Method option (see docs/methods.md)")
        options.append((names, f.name, click_type(hints[f.name]), f"{help_text} [{origin}: {f.default}]"))
    return options


def method_field_options() -> list[tuple[list[str], str, Any, str]]:
    """(option names, field, click type, help) of every method option."""
    from training.contrastive.presets import MethodOptions
    from training.method_registry import method_class, method_names

    options = _dataclass_options(MethodOptions, "default, or the --method preset's")
    for name in method_names(addons=True):
        if method_class(name).Options is not None:
            options += _dataclass_options(method_class(name).Options, f"--method=...+{name}, default")
    return options


def method_options(func):
    """Decorator: one click option per method field."""
    for names, field, kind, help_text in reversed(method_field_options()):
        func = click.option(*names, field, type=kind, default=None, help=help_text)(func)
    return func


def pop_method_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove the method options from click's kwargs; None = not given ('none' too, except --noise_clamp)."""
    overrides = {field: kwargs.pop(field) for _, field, _, _ in method_field_options()}
    for field, value in list(overrides.items()):
        if value == "none" and field != "noise_clamp":  # 'none' = the option's automatic default
            overrides[field] = None
    for flag in UPSTREAM_FLAGS:
        overrides[flag] = kwargs.pop(flag)
    return overrides

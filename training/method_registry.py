"""The one registry of training methods: `--method` names for train.py, demo.py and the comparison harness.

A method is a `training.method.Method` subclass decorated with `@register(name, ...)`; the module that
defines it is imported by `training/methods/__init__.py` (one line per method). `--method` takes one
name or several joined by '+': at most one base method (ada, adalinear, insgen, fakeclr, contragan) and
any add-ons (lecam, diffaugment, apa), e.g. `--method=ada+lecam`. Add-ons alone run on top of 'ada'.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

_REGISTRY: dict[str, type] = {}
DEFAULT_BASE = "ada"


def register(name: str, *, order: int, preset: Optional[dict[str, Any]] = None, addon: bool = False,
             needs_labels: bool = False, options: Optional[type] = None, default_aug: Optional[str] = None,
             description: str = ""):
    """Class decorator: the method class under `name`.

    preset:  values of training.contrastive.presets.MethodOptions this method sets (base methods)
    addon:   combinable with a base method through '+' (add-ons bring their own `options` dataclass)
    default_aug: train.py's --aug when --method names no base method and --aug is not given
             (e.g. 'noaug' for DiffAugment, whose reference runs have no ADA pipe)
    order:   position in listings (--help, errors, the harness): base methods first, then add-ons
    options: the add-on's options dataclass; each field becomes a train.py option (type and help from
             the field's type and `metadata['help']`), parsed once into this dataclass
    """
    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name, cls.order, cls.preset, cls.addon = name, (addon, order), dict(preset or {}), addon
        cls.needs_labels, cls.default_aug = needs_labels, default_aug
        cls.Options, cls.description = options, description or (cls.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = cls
        return cls
    return decorate


def _registry() -> dict[str, type]:
    import training.methods  # noqa: F401 (imports every method module, which registers itself)
    return dict(sorted(_REGISTRY.items(), key=lambda item: item[1].order))


def method_names(*, addons: Optional[bool] = None) -> tuple[str, ...]:
    """Registered names in registration order; `addons` True/False keeps only add-ons / base methods."""
    return tuple(name for name, cls in _registry().items() if addons is None or cls.addon == addons)


def method_class(name: str) -> type:
    registry = _registry()
    if name not in registry:
        raise ValueError(f"--method: unknown method {name!r}; use one of {', '.join(registry)} "
                         "(add-ons join a base method with '+', e.g. ada+lecam)")
    return registry[name]


def split_method(method: str) -> tuple[str, tuple[str, ...]]:
    """'fakeclr+lecam' -> ('fakeclr', ('lecam',)); add-ons alone -> ('ada', add-ons). Checks every part."""
    parts = [part.strip() for part in str(method).split("+")]
    classes = [method_class(part) for part in parts]
    bases = [part for part, cls in zip(parts, classes) if not cls.addon]
    addons = tuple(part for part, cls in zip(parts, classes) if cls.addon)
    if len(bases) > 1:
        raise ValueError(f"--method={method}: combines base methods {' and '.join(bases)}; use one base method "
                         "plus add-ons (" + ", ".join(method_names(addons=True)) + ")")
    if len(set(addons)) != len(addons):
        raise ValueError(f"--method={method}: an add-on is named twice")
    return (bases[0] if bases else DEFAULT_BASE), addons


def addon_option_fields() -> list[tuple[str, dataclasses.Field]]:
    """(add-on name, field) of every add-on's options dataclass: the train.py options they declare."""
    return [(name, f) for name, cls in _registry().items() if cls.Options is not None
            for f in dataclasses.fields(cls.Options)]


def method_default_aug(method: str) -> Optional[str]:
    """The --aug an add-on asks for when the user named no base method ('diffaugment' -> 'noaug'), else None."""
    parts = [part.strip() for part in str(method).split("+")]
    classes = [method_class(part) for part in parts]
    if any(not cls.addon for cls in classes):
        return None
    return next((cls.default_aug for cls in classes if cls.default_aug is not None), None)

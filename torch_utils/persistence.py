"""Persistent network classes: modules that pickle as plain data, never as code.

A class decorated with `persistent_class` remembers the arguments it was constructed with
(`init_args`, `init_kwargs`). Pickling an instance stores a small record

    {'format': 'fakeclr-persistent', 'version': 1, 'class_name': 'training.networks.Generator',
     'init_args': (...), 'init_kwargs': {...}, 'state_dict': OrderedDict(name -> tensor), 'training': bool}

behind one reconstructor function, `rebuild_persistent_module`. Loading resolves the class by
name inside this project only, constructs it from the stored arguments and loads the state dict.
Nothing from the pickle is ever executed.

Upstream (NVlabs) pickles name a different reconstructor, `_reconstruct_persistent_obj`, whose
record embeds the defining module's source text. Upstream executes that source; we never do.
`_reconstruct_persistent_obj` here only wraps the record in an `UpstreamRecord` that
`training.network_pickle` later converts into our own classes (see `convert_upstream_record`).
"""

from __future__ import annotations

import copy
import io
import itertools
import pickle
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch

from torch_utils import init_arg_limits, load_budget, storage_records

RECORD_FORMAT = "fakeclr-persistent"
RECORD_VERSION = 1
UPSTREAM_RECORD_VERSION = 6

# Upstream class names (as stored in their records) -> our dotted class names.
UPSTREAM_CLASS_NAMES = {
    name: "training.networks." + name
    for name in (
        "FullyConnectedLayer", "Conv2dLayer", "MappingNetwork", "SynthesisLayer", "ToRGBLayer", "SynthesisBlock",
        "SynthesisNetwork", "Generator", "DiscriminatorBlock", "MinibatchStdLayer", "DiscriminatorEpilogue",
        "Discriminator",
    )
}
UPSTREAM_CLASS_NAMES["AugmentPipe"] = "training.augment.AugmentPipe"
# The only classes a record may name (exact names, checked before any import; dnnlib.util.CONSTRUCTIBLE_NAMES
# holds them too). AugmentPipe computes fixed filters with real tensors, so it cannot be sized on the meta device;
# its arguments are scalars only (init_arg_limits), so its size does not depend on the file.
PERSISTENT_CLASS_NAMES = frozenset(UPSTREAM_CLASS_NAMES.values())
UNPROBED_CLASS_NAMES = frozenset({"training.augment.AugmentPipe"})


class RefusedRecord(pickle.UnpicklingError):
    """A network record that names something we do not build, or does not match what we build."""


# ----------------------------------------------------------------------------
# The decorator.

def persistent_class(orig_class: type) -> type:
    """Decorate a torch.nn.Module subclass so that it records its init arguments and pickles as data."""
    if not (isinstance(orig_class, type) and issubclass(orig_class, torch.nn.Module)):
        raise TypeError(f"persistent_class: {orig_class!r} is not a torch.nn.Module subclass")

    class Decorator(orig_class):  # type: ignore[misc, valid-type]
        _is_persistent = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            _check_pickleable((args, kwargs), orig_class.__name__)
            super().__init__(*args, **kwargs)
            # Stored after super().__init__ so that Module.__setattr__ is ready; deep copies so
            # later mutation of the caller's dicts cannot change what gets saved.
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self) -> tuple:
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self) -> dict:
            return copy.deepcopy(self._init_kwargs)

        def __reduce__(self) -> tuple[Callable, tuple]:
            return rebuild_persistent_module, (make_record(self),)

        def __deepcopy__(self, memo: dict) -> Any:
            # Ordinary attribute-wise deep copy (keeps requires_grad, hooks, ...); only pickling uses the record.
            clone = type(self).__new__(type(self))
            memo[id(self)] = clone
            for key, value in self.__dict__.items():
                clone.__dict__[key] = copy.deepcopy(value, memo)
            return clone

    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    return Decorator


def is_persistent(obj: Any) -> bool:
    """True for a persistent class or an instance of one."""
    cls = obj if isinstance(obj, type) else type(obj)
    return bool(getattr(cls, "_is_persistent", False))


def class_name_of(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_pickleable(obj: Any, owner: str) -> None:
    """Constructor arguments must be plain data: they are what the snapshot stores."""
    def check(value: Any) -> None:
        if value is None or isinstance(value, (str, bytes, bool, int, float, complex, np.ndarray, np.generic,
                                                torch.Tensor, torch.dtype, torch.device)):
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                check(item)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                check(key)
                check(item)
            return
        if is_persistent(value):
            return
        raise TypeError(f"{owner}: constructor argument of type {type(value).__name__} cannot be stored in a "
                        f"snapshot; pass plain data (numbers, strings, lists, dicts, tensors) instead")
    check(obj)


# ----------------------------------------------------------------------------
# Our own records.

def make_record(module: torch.nn.Module) -> dict:
    """The pickled form of a persistent module: class name, constructor arguments, tensors."""
    state = OrderedDict((name, tensor.detach()) for name, tensor in module.state_dict().items())
    return dict(format=RECORD_FORMAT, version=RECORD_VERSION, class_name=class_name_of(module),
                init_args=module._init_args, init_kwargs=module._init_kwargs, state_dict=state,
                training=bool(module.training))


def resolve_persistent_class(class_name: Any) -> type:
    """Look a persistent class up by its exact dotted name, from PERSISTENT_CLASS_NAMES only.

    The name is checked against that fixed list before anything is imported: a record naming a module planted
    beside ours (`training.evil.Generator`) is refused without Python ever importing, and so running, it.
    """
    if not isinstance(class_name, str) or class_name not in PERSISTENT_CLASS_NAMES:
        raise RefusedRecord(f"cannot resolve network class {class_name!r:.120}: it is not a persistent network "
                            f"class of this project (known: {', '.join(sorted(PERSISTENT_CLASS_NAMES))})")
    from dnnlib import util  # local import: dnnlib imports nothing from here, but keep the module light
    try:
        cls = util.get_obj_by_name(class_name)
    except (ValueError, ImportError) as error:
        raise RefusedRecord(f"cannot resolve network class {class_name!r}: {error}") from None
    if not is_persistent(cls):
        raise RefusedRecord(f"refusing to rebuild {class_name!r}: it is not a persistent network class")
    return cls


def rebuild_persistent_module(record: dict) -> torch.nn.Module:
    """Reconstructor named in our pickles: build the class from its arguments, then load its tensors."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise RefusedRecord("malformed persistent-module record (expected a fakeclr-persistent dict)")
    what = f"the record of {str(record.get('class_name'))[:80]}"
    load_budget.charge_record(what)
    load_budget.check_tree(record, what)  # its arguments are walked (copied, checked) below
    if record.get("version") != RECORD_VERSION:
        raise RefusedRecord(f"persistent-module record version {record.get('version')!r} is not supported "
                                     f"(this code reads version {RECORD_VERSION})")
    cls = resolve_persistent_class(record["class_name"])
    state_dict = record["state_dict"]
    stored = storage_records.total_elements(state_dict.values()) if isinstance(state_dict, dict) else 0
    module = build_within_stored_size(cls, record.get("init_args", ()), record.get("init_kwargs", {}),
                                      stored, record["class_name"])
    module.load_state_dict(state_dict, strict=True)
    module.train(bool(record.get("training", False)))
    return module


# Room for tensors a record need not store: non-persistent buffers, an AugmentPipe's fixed filters.
UNSTORED_ELEMENTS_ALLOWANCE = 1 << 24


def build_within_stored_size(cls: type, init_args: tuple, init_kwargs: dict, stored_elements: int,
                             what: str) -> torch.nn.Module:
    """Construct cls, but only if its arguments are in range and its tensors no larger than the file stores.

    Forged init arguments (a resolution of 2**20, zero channels, 200000 layers) are refused first by the documented
    ranges (`init_arg_limits`), then by size: the stored tensors themselves are bounded by the file's length
    (`storage_records`), and the size is measured on the meta device, which allocates nothing. Any error a
    constructor raises on the stored arguments becomes a one-line RefusedRecord.
    """
    try:
        init_arg_limits.check_init_args(cls, init_args, init_kwargs, what)
    except init_arg_limits.InitArgError as error:
        raise RefusedRecord(f"{error}; " + storage_records.FIX_HINT) from None
    probe = None
    if class_name_of(cls) not in UNPROBED_CLASS_NAMES:
        with torch.device("meta"):
            probe = _construct(cls, init_args, init_kwargs, what)
    if probe is not None:
        needed = storage_records.total_elements(itertools.chain(probe.parameters(), probe.buffers()))
        if needed > stored_elements + UNSTORED_ELEMENTS_ALLOWANCE:
            raise storage_records.OversizedRecord(
                f"the stored arguments of {what} make a network of {needed} values but the file holds "
                f"{stored_elements}; " + storage_records.FIX_HINT)
    return _construct(cls, init_args, init_kwargs, what)


def _construct(cls: type, init_args: tuple, init_kwargs: dict, what: str) -> torch.nn.Module:
    try:
        return cls(*init_args, **init_kwargs)
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError,
            RuntimeError, NotImplementedError, RecursionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RefusedRecord(f"cannot build {what} from the stored init arguments ({type(error).__name__}: "
                            f"{first:.200}); " + storage_records.FIX_HINT) from None


# ----------------------------------------------------------------------------
# Upstream records: read as data, converted later, source never executed.

class UpstreamRecord:
    """An upstream persistent object as stored: class name plus its `__dict__` (tensors, children, init args)."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise RefusedRecord("malformed upstream persistent record (expected type 'class')")
        if meta.get("version") != UPSTREAM_RECORD_VERSION:
            raise RefusedRecord(f"upstream persistent record version {meta.get('version')!r} is not "
                                         f"supported (expected {UPSTREAM_RECORD_VERSION})")
        self.class_name = str(meta.get("class_name"))
        self.state = meta.get("state") or {}
        if not isinstance(self.state, dict):
            raise RefusedRecord(f"upstream record for {self.class_name!r} has a non-dict state")

    def __repr__(self) -> str:
        return f"UpstreamRecord({self.class_name!r})"

    def budget_children(self) -> list:
        """What `load_budget.check_tree` walks: the record's state (children, init args, tensors)."""
        return [self.state]

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this record and its children, keyed like a state dict."""
        tensors: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, tensor in (self.state.get(group) or {}).items():
                if tensor is not None:
                    tensors[prefix + name] = tensor.detach() if isinstance(tensor, torch.Tensor) else tensor
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, UpstreamRecord):
                tensors.update(child.named_tensors(prefix + name + "."))
            elif isinstance(child, torch.nn.Module):
                tensors.update({prefix + name + "." + k: v for k, v in child.state_dict().items()})
        return tensors


def _reconstruct_persistent_obj(meta: dict) -> UpstreamRecord:
    """Same name as upstream's reconstructor so upstream pickles resolve here; returns data only."""
    return UpstreamRecord(meta)


def convert_upstream_record(record: UpstreamRecord, source: str = "<pickle>") -> torch.nn.Module:
    """Build our equivalent of an upstream module from its stored init arguments and tensors."""
    our_name = UPSTREAM_CLASS_NAMES.get(record.class_name)
    if our_name is None:
        raise RefusedRecord(f"{source}: upstream class {record.class_name!r} has no equivalent here "
                                     f"(known: {', '.join(sorted(UPSTREAM_CLASS_NAMES))})")
    cls = _resolve_known_class(our_name, source)
    load_budget.charge_record(source)
    init_args = record.state.get("_init_args", ())
    init_kwargs = record.state.get("_init_kwargs", {})
    stored = storage_records.total_elements(record.named_tensors().values())
    module = build_within_stored_size(cls, init_args, init_kwargs, stored, f"{source}: {record.class_name}")
    _copy_upstream_tensors(record, module, source, lenient=(record.class_name == "AugmentPipe"))
    module.train(bool(record.state.get("training", False)))
    return module


def _resolve_known_class(our_name: str, source: str) -> type:
    """Classes from the fixed upstream-name table (ours by construction; need not be persistent)."""
    from dnnlib import util
    try:
        return util.get_obj_by_name(our_name)
    except (ValueError, ImportError) as error:
        raise RefusedRecord(f"{source}: cannot import {our_name} ({error})") from None


@torch.no_grad()
def _copy_upstream_tensors(record: UpstreamRecord, module: torch.nn.Module, source: str, lenient: bool) -> None:
    stored = record.named_tensors()
    ours = module.state_dict()
    missing = [name for name in ours if name not in stored or tuple(stored[name].shape) != tuple(ours[name].shape)]
    extra = [name for name in stored if name not in ours]
    if not lenient and (missing or extra):
        raise RefusedRecord(f"{source}: {record.class_name} tensors do not match ours "
                                     f"(missing or reshaped: {missing[:5]}, unexpected: {extra[:5]})")
    for name, tensor in ours.items():
        if name not in missing:
            tensor.copy_(stored[name])


# ----------------------------------------------------------------------------
# Storage bytes inside plain pickles, always read as weights only.

def load_storage_from_bytes(data: bytes) -> Any:
    """Stand-in for torch.storage._load_from_bytes: sizes checked first, then torch.load in weights-only mode."""
    storage_records.check_legacy_storage_blob(data)
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")

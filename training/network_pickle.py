"""Safe network pickles: save our snapshots, load ours, upstream (NVlabs) ones and torch.save files.

`load_network_pkl` never executes code carried by a file. Pickles are read by an Unpickler
whose `find_class` admits only an explicit allowlist of data constructors (tensors, storages,
numpy arrays, OrderedDict, EasyDict, dtypes) and the two persistence reconstructors; any other
global is refused with an error naming it. Upstream records are converted into our classes
from their stored init arguments and tensors; their embedded module source is ignored.
Files written by export.py --format=safetensors (no pickle at all) are read by `training.network_safetensors`.
Files written by `torch.save` (zip or legacy format) are read with `torch.load(weights_only=True)`;
a bare state dict of a Generator or Discriminator is rebuilt by shape inference (`training.state_dict_config`).

Snapshots written by `save_network_pkl` end in a SHA-256 content digest (`training.snapshot_digest`) that
loading verifies before parsing; a file without one (older snapshots, upstream pickles) loads unverified.
Loading is bounded: every tensor record is checked against the bytes the file really carries before
anything is allocated (`torch_utils.storage_records`), and a network is built only if its size matches the
tensors stored for it. The file's size, pickle opcodes, expanded object tree, network records and tensor views
together are held to the shared budgets of `torch_utils.load_budget` (docs/security.md, "Bounded loading").
Every refusal is a `NetworkPickleError` whose message is one line,
`<file>: <what is wrong>; <how to fix>`, ready for a CLI to print after "Error: ".
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import io
import os
import pickle
import re
import zipfile
from typing import Any, BinaryIO, Callable

import torch

import dnnlib
from dnnlib import util
from torch_utils import load_budget, persistence, storage_records
from training import network_safetensors, snapshot_digest, wrong_network_input

NETWORK_KEYS = ("G", "D", "G_ema")
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
ZIP_MAGIC = b"PK\x03\x04"
USE_INTACT_FILE = "use a snapshot written by train.py, an upstream network pickle or a torch.save state dict"


class NetworkPickleError(pickle.UnpicklingError, ValueError):
    """A network pickle that is refused (unsafe, forged) or broken; str() is one line naming the file."""


# ----------------------------------------------------------------------------
# Saving.

def save_network_pkl(path: str, data: dict) -> None:
    """Pickle a snapshot dict (G, D, G_ema, augment_pipe, training_set_kwargs, ...) atomically, followed by
    its content digest (training.snapshot_digest), which `load_network_pkl` verifies."""
    if not isinstance(data, dict):
        raise TypeError(f"save_network_pkl({path}): expected a dict of snapshot items, got {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, torch.nn.Module) and not persistence.is_persistent(value):
            raise TypeError(f"save_network_pkl({path}): item {key!r} ({type(value).__name__}) is not a persistent "
                            f"class; decorate it with torch_utils.persistence.persistent_class")
    with util.atomic_write(path, "wb") as f:  # the digest trailer lets loading refuse changed bytes
        snapshot_digest.write_with_digest(f, lambda out: pickle.dump(data, out, protocol=pickle.HIGHEST_PROTOCOL))


# ----------------------------------------------------------------------------
# The allowlist.

def _checked_rebuild(rebuild: Callable, budget: load_budget.ElementBudget) -> Callable:
    """torch's tensor rebuild, refusing a view larger than its storage or past the file's element budget."""
    def rebuild_within_storage(storage: Any, storage_offset: int, size: Any, *rest: Any) -> torch.Tensor:
        dtype = getattr(storage, "dtype", torch.uint8)  # untyped storages count bytes
        untyped = getattr(storage, "_untyped_storage", storage)  # TypedStorage.nbytes() warns
        storage_records.check_tensor_fits(untyped.nbytes(), dtype, storage_offset, size)
        budget.charge_shape(size)
        return rebuild(storage, storage_offset, size, *rest)
    return rebuild_within_storage


def _torch_globals(budget: load_budget.ElementBudget) -> dict[tuple[str, str], Any]:
    checked = {fn: _checked_rebuild(getattr(torch._utils, fn), budget)
               for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3") if hasattr(torch._utils, fn)}
    safe_funcs = tuple(checked[fn] for fn in ("_rebuild_tensor", "_rebuild_tensor_v2") if fn in checked) \
        + (torch._utils._rebuild_parameter,)
    names: dict[tuple[str, str], Any] = {("torch._utils", fn): rebuild for fn, rebuild in checked.items()}
    names.update({("torch._utils", fn): getattr(torch._utils, fn)
                  for fn in ("_rebuild_parameter", "_rebuild_parameter_with_state") if hasattr(torch._utils, fn)})
    names[("torch._utils", "_rebuild_from_type_v2")] = _rebuild_from_type_v2(safe_funcs)
    names[("torch.storage", "_load_from_bytes")] = persistence.load_storage_from_bytes
    names[("torch", "Size")] = torch.Size
    names[("torch", "device")] = torch.device
    # Tensor classes only as arguments of _rebuild_from_type_v2: called directly they allocate a size from the file.
    for module, name, cls in (("torch._tensor", "Tensor", torch.Tensor), ("torch", "Tensor", torch.Tensor),
                              ("torch.nn.parameter", "Parameter", torch.nn.Parameter)):
        names[(module, name)] = load_budget.ArgumentOnly(cls, f"{module}.{name}")
    names.update({("torch", name): dtype for name, dtype in storage_records.TORCH_DTYPES.items()})
    return names


def _rebuild_from_type_v2(safe_funcs: tuple) -> Callable:
    """torch's subclass-tensor rebuild, limited to plain tensors and parameters."""
    def rebuild(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
        new_type = load_budget.unwrap(new_type)
        if new_type not in (torch.Tensor, torch.nn.Parameter) or func not in safe_funcs:
            raise pickle.UnpicklingError(f"refusing tensor subclass rebuild for {new_type!r:.60}")
        return torch._utils._rebuild_from_type_v2(func, new_type, args, state)
    return rebuild


def _allowed_globals(budget: load_budget.ElementBudget) -> dict[tuple[str, str], Any]:
    names: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): builtins.set,
        ("builtins", "frozenset"): builtins.frozenset,
        ("builtins", "complex"): builtins.complex,
        ("builtins", "bytearray"): load_budget.bounded_bytearray,  # its bytes from the file, never a bare size
        ("builtins", "slice"): builtins.slice,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,  # protocol 0/1; its class args pass find_class too
        ("builtins", "object"): builtins.object,
        ("builtins", "dict"): builtins.dict,
        ("dnnlib.util", "EasyDict"): dnnlib.EasyDict,
        ("dnnlib", "EasyDict"): dnnlib.EasyDict,
        ("torch_utils.persistence", "rebuild_persistent_module"): persistence.rebuild_persistent_module,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): persistence._reconstruct_persistent_obj,
    }
    names.update(_torch_globals(budget))
    names.update(load_budget.numpy_globals())
    return names


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allowlisted globals; anything else is a one-line refusal."""

    def __init__(self, file: BinaryIO, source: str, budget: load_budget.ElementBudget | None = None):
        super().__init__(file)
        self.source = source
        self.allowed = _allowed_globals(budget or load_budget.ElementBudget(source, load_budget.MAX_NETWORK_ELEMENTS))

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise NetworkPickleError(
                f"{self.source}: refusing to load global {module}.{name} (network pickles may only contain "
                f"tensors, arrays, plain containers and network records, so the file is refused unread); "
                + USE_INTACT_FILE
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise NetworkPickleError(f"{self.source}: unexpected persistent id {pid!r:.60} in a plain pickle; "
                                 + USE_INTACT_FILE)


# ----------------------------------------------------------------------------
# Loading.

def load_network_pkl(path_or_url_or_file: Any, force_fp16: bool = False) -> dict:
    """Read a network snapshot safely; returns a dict with at least G_ema (modules are ours).

    Raises FileNotFoundError for a missing local file and NetworkPickleError (one line) for everything else
    that is wrong with it.
    """
    source, data = _read_bytes(path_or_url_or_file)
    if data[:4] == ZIP_MAGIC and (not_a_network := wrong_network_input.zip_without_network(data, source)):
        raise NetworkPickleError(not_a_network)  # a dataset zip given as the network, say so
    budget = load_budget.ElementBudget(source, load_budget.MAX_NETWORK_ELEMENTS)
    try:
        snapshot_digest.verify(data, source)
        if source.endswith(network_safetensors.SUFFIX) or network_safetensors.looks_like_safetensors(data):
            result = _from_safetensors(data, source)
        else:
            with load_budget.load_scope():  # tree walks and network records of this file share one allowance
                if data[:4] == ZIP_MAGIC:
                    result = _modules_from_state_dicts(_torch_load(data, source, budget), source)
                else:
                    result = _unpickle(data, source, budget)
        _validate(result, source)
    except NetworkPickleError:
        raise
    except snapshot_digest.DigestMismatch as error:
        raise NetworkPickleError(str(error)) from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, RuntimeError, EOFError, ArithmeticError,
            MemoryError) as error:  # ArithmeticError: forged init arguments that divide by zero or overflow
        raise NetworkPickleError(one_line_refusal(source, error)) from None
    if force_fp16:
        result = {key: (_with_fp16(value) if key in NETWORK_KEYS else value) for key, value in result.items()}
    return result


def _read_bytes(path_or_url_or_file: Any) -> tuple[str, bytes]:
    limit = load_budget.MAX_NETWORK_FILE_BYTES
    if hasattr(path_or_url_or_file, "read"):
        source = str(getattr(path_or_url_or_file, "name", "<file object>"))
        return source, _bounded(lambda: load_budget.read_stream(path_or_url_or_file, limit, source))
    if not isinstance(path_or_url_or_file, (str, os.PathLike)):
        raise TypeError(f"load_network_pkl: expected a path, URL or binary file, got {type(path_or_url_or_file).__name__}")
    source = os.fspath(path_or_url_or_file)
    if not util.is_url(source, allow_file_urls=True) and os.path.isdir(source):
        raise NetworkPickleError(wrong_network_input.directory_message(source))
    if not util.is_url(source, allow_file_urls=True) and not os.path.exists(source):  # a FIFO is refused below
        raise FileNotFoundError(f"{source}: no such network pickle; check the path or URL")
    try:
        if not util.is_url(source, allow_file_urls=True):
            return source, _bounded(lambda: load_budget.read_file(source, limit, source))
        with util.open_url(source) as f:
            return source, _bounded(lambda: load_budget.read_stream(f, limit, source))
    except OSError as error:
        reason = error.strerror or str(error).splitlines()[0]
        raise NetworkPickleError(f"{source}: cannot read the network pickle ({reason}); check the path, URL "
                                 f"and permissions") from None


def _bounded(read: Callable[[], bytes]) -> bytes:
    try:
        return read()
    except load_budget.OverBudget as error:
        raise NetworkPickleError(f"{error}; " + USE_INTACT_FILE if ";" not in str(error) else str(error)) from None


def one_line_refusal(source: str, error: BaseException) -> str:
    """`<file>: <what is wrong>; <how to fix>` from any loader error, never advising to trust the file."""
    text = load_budget.first_line(error)
    if not text.startswith(source):
        text = f"{source}: {text}"
    return text if ";" in text else f"{text}; {USE_INTACT_FILE}"


def _from_safetensors(data: bytes, source: str) -> dict:
    if not network_safetensors.looks_like_safetensors(data):
        raise NetworkPickleError(f"{source}: not a .safetensors file (no JSON header after the 8-byte length); "
                                 + network_safetensors.INTACT_HINT)
    try:
        return network_safetensors.decode(data, source)
    except network_safetensors.SafetensorsFormatError as error:
        raise NetworkPickleError(str(error)) from None


def _torch_load(data: bytes, source: str, budget: load_budget.ElementBudget) -> Any:
    if data[:4] == ZIP_MAGIC:
        _check_torch_zip(data, source)
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise NetworkPickleError(_weights_only_refusal(source, str(error))) from None
        raise NetworkPickleError(f"{source}: not a readable torch.save file ({load_budget.first_line(error):.200}); "
                                 + storage_records.FIX_HINT) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise NetworkPickleError(f"{source}: not a readable torch.save file ({load_budget.first_line(error):.200}); "
                                 + storage_records.FIX_HINT) from None
    storage_records.check_loaded_tensors(obj, budget)
    return obj


def _check_torch_zip(data: bytes, source: str) -> None:
    """A torch zip archive: member sizes and the object pickle's opcodes bounded before torch reads them
    (torch itself compares each storage record with the size its pickle declares)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            load_budget.check_zip_archive(archive, load_budget.MAX_NETWORK_FILE_BYTES, source)
            for name in archive.namelist():
                if name.endswith("data.pkl"):
                    load_budget.scan_pickle(load_budget.read_stream(archive.open(name), 64 * load_budget.MiB, source),
                                            source)
    except zipfile.BadZipFile as error:
        raise NetworkPickleError(f"{source}: not a readable torch.save file ({error}); "
                                 + storage_records.FIX_HINT) from None


def _weights_only_refusal(source: str, torch_message: str) -> str:
    """Name what the file asked for; torch's own text suggests trusting the file, which we never do."""
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    what = f"it names {found.group(1)}" if found else "it holds objects other than tensors and plain containers"
    return (f"{source}: refused: {what}, which a weights-only file may not contain (loading it could run code); "
            + USE_INTACT_FILE)


def _unpickle(data: bytes, source: str, budget: load_budget.ElementBudget) -> dict:
    stream = io.BytesIO(data)
    try:
        load_budget.scan_pickle(data, source)  # bounds the objects the unpickler can create
        obj = SafeUnpickler(stream, source, budget).load()
    except NetworkPickleError:
        raise
    except storage_records.OversizedRecord as error:
        raise NetworkPickleError(one_line_refusal(source, error)) from None
    except (persistence.RefusedRecord, load_budget.OverBudget) as error:
        raise NetworkPickleError(one_line_refusal(source, error)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, TypeError, IndexError, KeyError, RuntimeError,
            OverflowError, MemoryError) as error:
        raise NetworkPickleError(f"{source}: not a readable network pickle ({type(error).__name__}: "
                                 f"{load_budget.first_line(error):.200}); " + USE_INTACT_FILE) from None
    if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:  # legacy (pre-zip) torch.save file
        try:
            storage_records.check_legacy_storage_blob(data)  # torch would allocate the declared sizes first
        except storage_records.OversizedRecord as error:
            raise NetworkPickleError(one_line_refusal(source, error)) from None
        return _modules_from_state_dicts(_torch_load(data, source, budget), source)
    if isinstance(obj, tuple) and len(obj) == 3:
        raise NetworkPickleError(f"{source}: looks like a TensorFlow-era pickle (G, D, Gs); convert it to the "
                                 f"PyTorch format first")
    load_budget.check_tree(obj, source)  # the conversion below copies containers: bound shared ones first
    return _convert_upstream(obj, source)


def _convert_upstream(obj: Any, source: str) -> Any:
    """Replace every UpstreamRecord in a (nested) container by our module."""
    if isinstance(obj, persistence.UpstreamRecord):
        return persistence.convert_upstream_record(obj, source)
    if isinstance(obj, dict):
        converted = {key: _convert_upstream(value, source) for key, value in obj.items()}
        return type(obj)(converted) if isinstance(obj, dnnlib.EasyDict) else converted
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert_upstream(value, source) for value in obj)
    return obj


def _validate(result: Any, source: str) -> None:
    if not isinstance(result, dict):
        raise ValueError(f"{source}: a network pickle must hold a dict (G, D, G_ema, ...), got {type(result).__name__}")
    for key in NETWORK_KEYS:
        if key in result and not isinstance(result[key], torch.nn.Module):
            raise ValueError(f"{source}: item {key!r} must be a network module, got {type(result[key]).__name__}")
    if "G_ema" not in result and "G" not in result and "D" not in result:
        raise ValueError(f"{source}: the pickle holds none of G, D, G_ema (keys: {sorted(map(str, result))})")
    kwargs = result.get("training_set_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValueError(f"{source}: training_set_kwargs must be a dict or None, got {type(kwargs).__name__}")
    pipe = result.get("augment_pipe")
    if pipe is not None and not isinstance(pipe, torch.nn.Module):
        raise ValueError(f"{source}: augment_pipe must be a module or None, got {type(pipe).__name__}")


@torch.no_grad()
def _with_fp16(module: torch.nn.Module) -> torch.nn.Module:
    """Rebuild G or D with num_fp16_res=4 and conv_clamp=256 (upstream's --force-fp16 behaviour)."""
    kwargs = module.init_kwargs
    if "synthesis_kwargs" in kwargs:
        kwargs["synthesis_kwargs"] = dict(kwargs["synthesis_kwargs"], num_fp16_res=4, conv_clamp=256)
    else:
        kwargs.update(num_fp16_res=4, conv_clamp=256)
    rebuilt = type(module)(*module.init_args, **kwargs)
    rebuilt.load_state_dict(module.state_dict())
    rebuilt.train(module.training)
    return rebuilt


def _modules_from_state_dicts(obj: Any, source: str) -> dict:
    """torch.save files: a dict of G/D/G_ema state dicts, or one bare G or D state dict."""
    from training import state_dict_config  # local: networks import torch ops, only needed here
    return state_dict_config.modules_from_state_dicts(obj, source)

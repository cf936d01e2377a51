"""Tensor storage records checked against the bytes that really back them, before anything is allocated.

A pickled tensor is a small record (storage, offset, size, stride) plus a storage blob in torch's legacy
`torch.save` layout. The record *declares* how many elements the storage holds; torch allocates that many
before it reads them, so a forged count of 2**35 makes a 300-byte file ask for 137 GB. Here the declared sizes
are compared with the payload the file actually carries, and a tensor may not claim more elements than its
storage holds (a stride-0 tensor of 10**12 "elements" would otherwise size the network built from it).

The legacy layout (the blob inside a pickled tensor, and a whole pre-zip `torch.save` file) is:
pickle(magic) pickle(protocol) pickle(sys_info) pickle(object with persistent ids ('storage', storage class,
key, location, numel, ...)) pickle([keys]) and then, per key, an 8-byte element count followed by the raw
bytes. The object pickle is read here with every global replaced by an inert stand-in, so nothing runs.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any, Iterable

import torch

from torch_utils import load_budget

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
# torch.float32, torch.half, ...: a fixed table, so a dtype name read from a file is looked up, never getattr'd on
# torch (whose module __getattr__ would import submodules by that name).
TORCH_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}

FIX_HINT = "the file is truncated or forged; use an intact snapshot"


OversizedRecord = load_budget.OversizedRecord  # a record that declares more data than the file holds


# ----------------------------------------------------------------------------
# Legacy storage blobs.

def check_legacy_storage_blob(data: bytes) -> None:
    """Raise OversizedRecord unless every storage the blob (or legacy file) declares is backed by its bytes.

    torch allocates each storage when its first declaration is read and fills it per listed key, so every
    declaration counts: one key declared twice with different sizes, a key listed twice, or a declared key that is
    never listed (allocated, never backed) is refused.
    """
    stream = io.BytesIO(data)
    try:
        magic = _load_plain(stream, data)
        if magic != LEGACY_MAGIC:
            raise OversizedRecord("a tensor storage record is not in torch's legacy format; " + FIX_HINT)
        _load_plain(stream, data)  # protocol version
        _load_plain(stream, data)  # sys_info
        load_budget.scan_pickle(data, "a tensor storage record", stream.tell())
        declared = _RecordUnpickler(stream)
        declared.load()
        keys = _load_plain(stream, data)
    except OversizedRecord:
        raise
    except Exception as error:  # noqa: BLE001 - any malformed header is a broken record
        raise OversizedRecord(f"a tensor storage record is unreadable ({type(error).__name__}: "
                              f"{load_budget.first_line(error)}); " + FIX_HINT) from None
    if not isinstance(keys, list) or not all(isinstance(key, (str, int)) for key in keys):
        raise OversizedRecord("a tensor storage record has no key list; " + FIX_HINT)
    if len(set(keys)) != len(keys) or set(keys) != set(declared.storages):
        raise OversizedRecord(f"a tensor storage record lists keys {sorted(map(str, keys))[:5]} but declares "
                              f"{sorted(map(str, declared.storages))[:5]} (duplicated or unbacked storages); "
                              + FIX_HINT)
    for key in keys:
        _check_one_storage(stream, declared.storages.get(key), key, len(data))


def _load_plain(stream: io.BytesIO, data: bytes) -> Any:
    load_budget.scan_pickle(data, "a tensor storage header", stream.tell())
    return _PlainUnpickler(stream).load()


def _check_one_storage(stream: io.BytesIO, declared: tuple[torch.dtype, int] | None, key: Any, total: int) -> None:
    if declared is None:
        raise OversizedRecord(f"storage {key!r} is listed but never declared; " + FIX_HINT)
    dtype, numel = declared
    header = stream.read(8)
    stored_numel = int.from_bytes(header, "little") if len(header) == 8 else -1
    nbytes = numel * element_size(dtype)
    remaining = total - stream.tell()
    if stored_numel != numel or nbytes > remaining:
        raise OversizedRecord(f"a tensor record declares {nbytes} bytes but the file holds only "
                              f"{max(remaining, 0)} for it; " + FIX_HINT)
    stream.seek(nbytes, io.SEEK_CUR)


class _PlainUnpickler(pickle.Unpickler):
    """Header pickles hold ints, strings and dicts only."""

    def find_class(self, module: str, name: str) -> Any:
        raise OversizedRecord(f"a tensor storage header names {module}.{name}; " + FIX_HINT)


class _Inert:
    """Stands in for every other global while the declarations are read: accepts anything, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _RecordUnpickler(pickle.Unpickler):
    """Reads the storage declarations: every persistent id is recorded, nothing is built."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self.storages: dict[Any, tuple[torch.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module == "torch" and name in TORCH_DTYPES:
            return TORCH_DTYPES[name]
        return _Inert  # the real loader decides what it admits; here only the sizes matter

    def persistent_load(self, pid: Any) -> None:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise OversizedRecord(f"a tensor storage record has an unexpected id {pid!r:.80}; " + FIX_HINT)
        dtype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or numel < 0:
            raise OversizedRecord(f"a tensor storage record declares {numel!r:.40} elements of {dtype!r:.40}; "
                                  + FIX_HINT)
        if not isinstance(key, (str, int)):
            raise OversizedRecord(f"a tensor storage record has key {key!r:.40}; " + FIX_HINT)
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):  # torch keeps the first, allocates it
            raise OversizedRecord(f"storage {key!r:.40} is declared twice with different sizes "
                                  f"({self.storages[key][1]} and {numel} elements); " + FIX_HINT)


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ----------------------------------------------------------------------------
# Tensors against their storages.

def check_tensor_fits(storage_bytes: int, dtype: torch.dtype, offset: int, size: Iterable[int]) -> None:
    """A tensor may not claim more elements than its storage holds (no stride-0 giants)."""
    shape = tuple(size)
    if any(not isinstance(dim, int) or dim < 0 for dim in shape) or not isinstance(offset, int) or offset < 0:
        raise OversizedRecord(f"a tensor record has shape {shape!r:.80} at offset {offset!r:.20}; " + FIX_HINT)
    available = storage_bytes // max(element_size(dtype), 1) - offset
    if math.prod(shape) > max(available, 0):
        raise OversizedRecord(f"a tensor record declares shape {list(shape)} ({math.prod(shape)} elements) but its "
                              f"storage holds {max(available, 0)}; " + FIX_HINT)


def check_loaded_tensors(tree: Any, budget: load_budget.ElementBudget) -> None:
    """The same bounds for tensors torch.load already rebuilt: each view within its storage, all views within
    the file's element budget, and the tree itself of bounded expanded size (checked first)."""
    load_budget.check_tree(tree, budget.what)
    _check_loaded(tree, budget)


def _check_loaded(tree: Any, budget: load_budget.ElementBudget) -> None:
    if isinstance(tree, torch.Tensor):
        check_tensor_fits(tree.untyped_storage().nbytes(), tree.dtype, tree.storage_offset(), tree.shape)
        budget.charge(tree.numel())
    elif isinstance(tree, dict):
        for value in tree.values():
            _check_loaded(value, budget)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            _check_loaded(value, budget)


def total_elements(tensors: Iterable[torch.Tensor]) -> int:
    return sum(int(t.numel()) for t in tensors if isinstance(t, torch.Tensor))

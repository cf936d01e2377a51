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


class OversizedRecord(pickle.UnpicklingError):
    """A record that declares more data than the file holds; refused before any allocation."""


# ----------------------------------------------------------------------------
# Legacy storage blobs.

def check_legacy_storage_blob(data: bytes) -> None:
    """Raise OversizedRecord unless every storage the blob (or legacy file) declares is backed by its bytes."""
    stream = io.BytesIO(data)
    try:
        magic = _PlainUnpickler(stream).load()
        if magic != LEGACY_MAGIC:
            raise OversizedRecord("a tensor storage record is not in torch's legacy format; " + FIX_HINT)
        _PlainUnpickler(stream).load()  # protocol version
        _PlainUnpickler(stream).load()  # sys_info
        declared = _RecordUnpickler(stream)
        declared.load()
        keys = _PlainUnpickler(stream).load()
    except OversizedRecord:
        raise
    except Exception as error:  # noqa: BLE001 - any malformed header is a broken record
        raise OversizedRecord(f"a tensor storage record is unreadable ({type(error).__name__}: {error}); "
                              + FIX_HINT) from None
    if not isinstance(keys, list):
        raise OversizedRecord("a tensor storage record has no key list; " + FIX_HINT)
    for key in keys:
        _check_one_storage(stream, declared.storages.get(key), key, len(data))


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
        self.storages[key] = (dtype, numel)


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


def check_shape_cap(offset: int, size: Iterable[int], max_elements: int) -> None:
    """For readers that copy into networks of fixed size: views may repeat elements (stride 0), up to a cap."""
    shape = tuple(size)
    if any(not isinstance(dim, int) or dim < 0 for dim in shape) or not isinstance(offset, int) or offset < 0:
        raise OversizedRecord(f"a tensor record has shape {shape!r:.80} at offset {offset!r:.20}; " + FIX_HINT)
    if math.prod(shape) > max_elements:
        raise OversizedRecord(f"a tensor record declares shape {list(shape)} ({math.prod(shape)} elements), more "
                              f"than the {max_elements} a weight file may hold; " + FIX_HINT)


def check_loaded_tensors(tree: Any) -> None:
    """The same bound for tensors torch.load already rebuilt (dicts, lists and tuples are walked)."""
    if isinstance(tree, torch.Tensor):
        check_tensor_fits(tree.untyped_storage().nbytes(), tree.dtype, tree.storage_offset(), tree.shape)
    elif isinstance(tree, dict):
        for value in tree.values():
            check_loaded_tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            check_loaded_tensors(value)


def total_elements(tensors: Iterable[torch.Tensor]) -> int:
    return sum(int(t.numel()) for t in tensors if isinstance(t, torch.Tensor))

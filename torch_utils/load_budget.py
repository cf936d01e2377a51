"""One budget for every loader: what a file may make us allocate is bounded before it is allocated.

A file from a stranger can be small and still ask for a lot: a 44-byte pickle calling `bytearray(3e9)`, a
200-byte pickle of shared lists that a converter copies a billion times, a gzip stream of zeros, an npz whose
array header declares 10**10 rows. Every loader in this project (network pickles, detector weights, stats
caches, `--projected-w`, dataset sources, results files) goes through the checks here, each sized from the
largest real file of its kind (see the constants). A refusal is an `OverBudget` error whose text is one line,
`<file>: <what is too big>; <fix>`.

The checks, and what each one stops:
  * `check_file_size` / `read_file`: a file larger than its kind ever is (a 30 GB sparse file) is refused from
    its size alone, and special files (FIFOs, devices) are refused instead of blocking.
  * `read_stream`: a decompressing stream (gzip, zip member) is read to at most its budget plus one byte.
  * `check_zip_member`: a zip member's declared size and compression ratio, before it is inflated.
  * `scan_pickle`: the number of pickle opcodes, counted without building anything; one opcode builds at most one
    object, so this bounds the objects an unpickler creates.
  * `check_tree`: the size of a loaded object tree as a copying walk sees it, counting every shared container
    each time it is reached (the "billion laughs" of shared lists), and its depth.
  * `ElementBudget`: tensor elements summed over every storage and view a file declares, stride-0 views counted
    at their expanded size (a later `.float()` or copy materialises them).
  * `safe_globals` helpers: `bytearray`, `numpy.ndarray` and the tensor classes are never callable with a size.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import pickle
import pickletools
import stat
import zipfile
import zlib
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import numpy as np

MiB = 1 << 20
GiB = 1 << 30

# Network files (our snapshots, upstream pickles, torch.save files, detector weights). The largest real ones: our
# own 1024 px snapshot, which adds Adam's two moments for G and D and a D_ema to G, D and G_ema (216 M float32
# values, about 870 MB); an upstream 1024 px snapshot (93 M values, about 360 MB); upstream's vgg16.pt (~530 MB).
# 2 GiB leaves room for wider configs and refuses anything an honest file never is.
MAX_NETWORK_FILE_BYTES = 2 * GiB
# Tensor elements a network file may declare over all its tensors (views counted at their full size): the 216 M of
# our 1024 px snapshot above; 2**28 (268 M, 1 GiB of float32) leaves some room.
MAX_NETWORK_ELEMENTS = 1 << 28
# Detector weights (--inception, --vgg16): VGG16 with its classifier is 138 M parameters, the largest detector;
# Inception-v3 with the FID head is 24 M. 160 M float32 elements are 640 MB once expanded by `.float()`.
MAX_DETECTOR_ELEMENTS = 160_000_000
# Pickle opcodes in one pickle: a 1024 px snapshot needs about 60 per tensor (record, storage, shape, stride)
# for some 1,500 tensors, i.e. under 100 k; 2 M keeps the scan under 2 s and the objects under ~200 MB.
MAX_PICKLE_OPCODES = 2_000_000
# Nodes of a loaded object tree as a copying walk visits them (shared containers counted at every visit); a
# snapshot's records have a few thousand, a CIFAR batch a few dozen.
MAX_TREE_NODES = 1_000_000
# All tree walks of one load together (records walked while unpickling, then the result): twice a snapshot's size.
MAX_LOAD_TREE_NODES = 4_000_000
# Network records built in one load: a snapshot holds G, D, G_ema, augment_pipe and a few contrastive heads (< 12);
# each record constructs a network, so their number bounds the load's time as well.
MAX_NETWORK_RECORDS = 64
# Nesting depth of a loaded tree: real records nest about 10 deep; recursive walkers stay far from Python's limit.
MAX_TREE_DEPTH = 200
# A numpy array rebuilt by `_reconstruct` starts empty (shape (0,)) and gets its data from the file; allow a few.
MAX_RECONSTRUCT_ELEMENTS = 1024
# Deflate cannot exceed a ratio of 1032:1; a higher declared ratio (bzip2/lzma bombs) is refused.
MAX_COMPRESSION_RATIO = 1100
# JSON side files (dataset.json labels, training_options.json, results.json): ImageNet's 1.28 M class labels
# take 45 MB; 64 MiB parse to well under 1 GB of Python objects.
MAX_JSON_BYTES = 64 * MiB
# --projected-w: projector.py writes one w per run ([1, num_ws, w_dim], 18 x 512 float32 = 36 KB at 1024 px);
# generate.py keeps all images in memory, so the number of frames is bounded as well.
MAX_PROJECTED_W_BYTES = 64 * MiB
MAX_PROJECTED_FRAMES = 1000
# Stats caches: the largest real cache holds the VGG16 features of 200 k images for pr50k3 (4096-d float32,
# 3.3 GB); a cache is also checked against the item count it must have before its arrays are read.
MAX_FEATURES = 4096
# Dataset sources: the CIFAR-10 python tarball is 186 MB unpacked (data_batch_N 31 MB each); MNIST's training
# images are 47 MB (EMNIST's largest split 547 MB); one source image file (an 8192 px RGBA PNG) < 256 MB.
MAX_TAR_BYTES = 512 * MiB
MAX_TAR_MEMBER_BYTES = 64 * MiB
MAX_IDX_BYTES = 600 * MiB
MAX_IMAGE_FILE_BYTES = 256 * MiB


class OverBudget(ValueError):
    """A file that would make us allocate (or read) more than its kind ever needs; str() is one line."""


class MalformedPickle(pickle.UnpicklingError, ValueError):
    """A stream that is not a complete pickle (found while counting its opcodes, before anything is built)."""


class OversizedRecord(pickle.UnpicklingError, OverBudget):
    """A tensor or storage record declaring more than the file holds or its budget allows; refused unallocated."""


def first_line(error: BaseException) -> str:
    """An error's first line for a one-line message, never relaying advice to load unsafely."""
    from dnnlib.cli_errors import first_line as clean_first_line  # local: keeps click out of the import chain
    return clean_first_line(str(error)) if str(error).strip() else type(error).__name__


def refuse(what: str, detail: str, fix: str = "the file is truncated, forged or not of this kind") -> OverBudget:
    return OverBudget(f"{what}: {detail}; {fix}")


# ----------------------------------------------------------------------------
# Files and streams.

def check_file_size(path: str, limit: int, what: str | None = None) -> int:
    """Size of a regular file, refused (without reading it) above `limit`; FIFOs and devices are refused too."""
    what = what or path
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise refuse(what, "is not a regular file (a FIFO, device or socket would block or never end)",
                     "give a regular file")
    if info.st_size > limit:
        raise refuse(what, f"is {info.st_size} bytes, more than the {limit} a file of this kind may have")
    return info.st_size


def read_file(path: str, limit: int, what: str | None = None) -> bytes:
    """The whole file, its size checked first (and again while reading: it may grow)."""
    size = check_file_size(path, limit, what)
    with open(path, "rb") as f:
        data = f.read(size + 1)  # not read(limit + 1): a plain read allocates the size it is asked for up front
    if len(data) > limit:
        raise refuse(what or path, f"grew past {limit} bytes while being read")
    return data


def read_stream(f: BinaryIO, limit: int, what: str) -> bytes:
    """At most `limit` bytes of a stream (decompressing or not); a longer stream is refused."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise refuse(what, f"holds more than {limit} bytes (a decompression bomb or a file of another kind)")
    return data


def check_zip_member(info: zipfile.ZipInfo, limit: int, what: str) -> None:
    """A zip member's declared size and compression ratio, before it is inflated."""
    if info.file_size > limit:
        raise refuse(what, f"member {info.filename} unpacks to {info.file_size} bytes, more than the {limit} "
                           f"allowed")
    if info.file_size > MiB and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise refuse(what, f"member {info.filename} is compressed {info.file_size // max(info.compress_size, 1)}:1 "
                           f"(a decompression bomb)")


def check_zip_archive(archive: zipfile.ZipFile, limit: int, what: str) -> None:
    """Every member of an archive, and their declared total, within `limit` bytes unpacked."""
    total = 0
    for info in archive.infolist():
        check_zip_member(info, limit, what)
        total += info.file_size
        if total > limit:
            raise refuse(what, f"its members unpack to more than {limit} bytes in all")


def check_image_zip(archive: zipfile.ZipFile, what: str, is_image: Callable[[str], bool],
                    labels_name: str = "dataset.json") -> None:
    """A dataset zip: the labels file within the JSON budget, each image within one image's budget (other members
    are never read, so they are not checked)."""
    for info in archive.infolist():
        if info.filename == labels_name:
            check_zip_member(info, MAX_JSON_BYTES, what)
        elif is_image(info.filename):
            check_zip_member(info, MAX_IMAGE_FILE_BYTES, what)


def read_json(source: str | BinaryIO, what: str) -> Any:
    """A JSON side file (labels, options, results) from a path or an open binary stream, at most MAX_JSON_BYTES."""
    import json  # local: only the side-file readers need it
    data = read_file(source, MAX_JSON_BYTES, what) if isinstance(source, str) else \
        read_stream(source, MAX_JSON_BYTES, what)
    return json.loads(data)


# ----------------------------------------------------------------------------
# Pickles.

_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: (1, False), pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
                 pickletools.TAKEN_FROM_ARGUMENT4U: (4, False), pickletools.TAKEN_FROM_ARGUMENT8U: (8, False)}
_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def scan_pickle(data: bytes, what: str, offset: int = 0, limit: int = MAX_PICKLE_OPCODES) -> int:
    """Count the opcodes of the pickle starting at `offset` (nothing is built); returns the offset after STOP."""
    end, count = len(data), 0
    while offset < end:
        op = _OPCODES.get(data[offset: offset + 1])
        if op is None:
            raise MalformedPickle(f"unknown opcode {data[offset: offset + 1]!r} at byte {offset}")
        count += 1
        if count > limit:
            raise refuse(what, f"holds more than {limit} pickle opcodes, far more objects than any real file")
        start, offset = offset + 1, _skip_argument(data, offset + 1, op, what)
        if op.name in _MEMO_PUTS and _memo_index(data, start, offset, op.name) > count:
            # The unpickler sizes its memo table by the index: LONG_BINPUT 2**32-1 would ask for ~70 GB (measured:
            # slot 55 M took 860 MB). A pickler numbers memo entries in order, so an honest index is below the
            # number of opcodes read so far.
            raise refuse(what, f"{op.name} at byte {start - 1} names memo slot "
                               f"{_memo_index(data, start, offset, op.name)} after only {count} opcodes")
        if op.name == "STOP":
            return offset
    raise MalformedPickle("the pickle ends before its STOP opcode (truncated)")


_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def _memo_index(data: bytes, start: int, end: int, name: str) -> int:
    if name == "PUT":
        text = data[start: end - 1]
        return int(text) if text.strip().isdigit() and len(text) < 20 else 1 << 62
    return int.from_bytes(data[start: end], "little")


def _skip_argument(data: bytes, at: int, op: pickletools.OpcodeInfo, what: str) -> int:
    arg = op.arg
    if arg is None:
        return at
    if arg.n >= 0:
        return at + arg.n
    if arg.n == pickletools.UP_TO_NEWLINE:
        for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):  # GLOBAL and INST: module\nname\n
            newline = data.find(b"\n", at)
            if newline < 0:
                raise MalformedPickle(f"unterminated {op.name} argument at byte {at}")
            at = newline + 1
        return at
    size, signed = _LENGTH_BYTES[arg.n]
    length = int.from_bytes(data[at: at + size], "little", signed=signed)
    if length < 0:
        raise MalformedPickle(f"negative {op.name} length at byte {at}")
    return at + size + length


class LoadScope:
    """What one load may still spend on tree walks and network records (see `load_scope`)."""

    def __init__(self, nodes: int, records: int):
        self.nodes_left, self.records_left = nodes, records


_SCOPE: contextvars.ContextVar[LoadScope | None] = contextvars.ContextVar("load_budget_scope", default=None)


@contextlib.contextmanager
def load_scope(nodes: int = MAX_LOAD_TREE_NODES, records: int = MAX_NETWORK_RECORDS) -> Iterator[LoadScope]:
    """Within the block, every `check_tree` and `charge_record` draws on one shared allowance: many records that
    are each within bounds cannot add up to an unbounded load."""
    token = _SCOPE.set(LoadScope(nodes, records))
    try:
        yield _SCOPE.get()
    finally:
        _SCOPE.reset(token)


def charge_record(what: str) -> None:
    """One network record about to be built (and its network constructed) in the current load scope."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.records_left -= 1
        if scope.records_left < 0:
            raise refuse(what, f"holds more than {MAX_NETWORK_RECORDS} network records (a snapshot has fewer than 12)")


def check_tree(tree: Any, what: str, limit: int = MAX_TREE_NODES, max_depth: int = MAX_TREE_DEPTH) -> int:
    """Nodes of a loaded object tree as a copy would visit them; shared containers count at every visit.

    Tensors, arrays and modules are leaves (their sizes are charged separately). Objects may expose more
    children through a `budget_children()` method (upstream records do). Returns the node count; inside
    `load_scope` the count is also drawn from the load's shared allowance.
    """
    scope = _SCOPE.get()
    allowed = limit if scope is None else min(limit, scope.nodes_left)
    count, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > allowed:
            raise refuse(what, f"expands to more than {allowed} objects when copied (shared containers repeated)")
        if depth > max_depth:
            raise refuse(what, f"nests containers more than {max_depth} deep")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for pair in node.items() for child in pair)
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend((child, depth + 1) for child in node)
        elif hasattr(node, "budget_children") and not isinstance(node, type):
            stack.extend((child, depth + 1) for child in node.budget_children())
    if scope is not None:
        scope.nodes_left -= count
    return count


class ElementBudget:
    """Tensor elements a file may declare, summed over every storage and every view (stride 0 at full size)."""

    def __init__(self, what: str, limit: int):
        self.what, self.limit, self.used = what, limit, 0

    def charge_shape(self, shape: Iterable[Any], kind: str = "tensor") -> int:
        dims = tuple(shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise OversizedRecord(f"{self.what}: a {kind} record has shape {dims!r:.80}; the file is forged")
        return self.charge(math.prod(dims), kind)

    def charge(self, elements: int, kind: str = "tensor") -> int:
        self.used += int(elements)
        if self.used > self.limit:
            raise OversizedRecord(f"{self.what}: a {kind} record declares {int(elements)} elements, which brings the "
                                  f"file's total to {self.used}, more than the {self.limit} allowed (views counted "
                                  f"at their expanded size); the file is truncated or forged")
        return int(elements)


# ----------------------------------------------------------------------------
# Allowlisted constructors that would otherwise take a size from the file.

class ArgumentOnly:
    """A class an unpickler may pass as an argument (to a rebuild function) but never call with a size."""

    def __init__(self, real: type, name: str):
        self.real, self.name = real, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise OverBudget(f"refusing a direct call of {self.name} (it would allocate a size named by the file); "
                         f"the file is forged")

    def __repr__(self) -> str:
        return f"ArgumentOnly({self.name})"


def unwrap(value: Any) -> Any:
    return value.real if isinstance(value, ArgumentOnly) else value


def bounded_bytearray(source: Any = b"", *args: Any) -> bytearray:
    """bytearray from bytes or text carried by the file; a bare count (`bytearray(3e9)`) is refused."""
    if not isinstance(source, (bytes, bytearray, str)):
        raise OverBudget(f"refusing bytearray({type(source).__name__}) (pickles store a bytearray's bytes, never a "
                         f"size); the file is forged")
    return bytearray(source, *args)


def numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's pickle constructors under the 1.x and 2.x module names, with sizes coming only from the file."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    reconstruct, ndarray = multiarray._reconstruct, ArgumentOnly(np.ndarray, "numpy.ndarray")

    def bounded_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if unwrap(subtype) is not np.ndarray:
            raise OverBudget(f"refusing to rebuild an array of type {subtype!r:.60}; the file is forged")
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(d, int) and 0 <= d for d in dims) or math.prod(dims) > MAX_RECONSTRUCT_ELEMENTS:
            raise OverBudget(f"refusing an empty array of shape {dims!r:.60} (arrays take their size from their "
                             f"data); the file is forged")
        return reconstruct(np.ndarray, dims, dtype)

    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[(module, "_reconstruct")] = bounded_reconstruct
        names[(module, "scalar")] = multiarray.scalar
    for dtype_class in set(type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"):
        names[("numpy.dtypes", dtype_class.__name__)] = dtype_class
    return names


# ----------------------------------------------------------------------------
# npz files (stats caches, --projected-w).

def read_npz(path: str, what: str, max_bytes: int, max_file_bytes: int | None = None,
             expected_shapes: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """All arrays of an .npz (no pickles), each header checked before its data is read.

    `max_bytes` bounds the arrays' total size; `expected_shapes` maps a key to a checker
    `shape -> None or reason` so that a wrong shape is refused before the data is read.
    """
    check_file_size(path, max_file_bytes if max_file_bytes is not None else max_bytes + MiB, what)
    arrays: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                check_zip_member(info, max_bytes + 4096, what)
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, fortran, dtype = _read_header(f, version)
                    if dtype.hasobject:
                        raise refuse(what, f"array {key!r} holds Python objects, which are never loaded",
                                     "write it with numpy arrays of numbers")
                    nbytes = math.prod(shape) * dtype.itemsize
                    total += nbytes
                    if total > max_bytes:
                        raise refuse(what, f"array {key!r} {list(shape)} {dtype} takes {nbytes} bytes, more than "
                                           f"the {max_bytes} a file of this kind may hold")
                    reason = (expected_shapes or {}).get(key, lambda s: None)(shape)
                    if reason:
                        raise refuse(what, f"array {key!r} has shape {list(shape)}: {reason}")
                    arrays[key] = _read_data(f, shape, fortran, dtype, nbytes, what, key)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error) as error:  # RuntimeError: encrypted
        raise refuse(what, f"is not a readable .npz ({type(error).__name__}: {first_line(error):.120})") from None
    except (EOFError, ValueError) as error:
        if isinstance(error, OverBudget):
            raise
        raise refuse(what, f"is not a readable .npz ({type(error).__name__}: {str(error).splitlines()[0]:.120})") \
            from None
    return arrays


def _read_header(f: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy version {version}")


def _read_data(f: BinaryIO, shape: tuple, fortran: bool, dtype: np.dtype, nbytes: int, what: str,
               key: str) -> np.ndarray:
    array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    buffer, filled = memoryview(array.reshape(-1).view(np.uint8)), 0
    while filled < nbytes:
        got = f.readinto(buffer[filled:])
        if not got:
            raise refuse(what, f"array {key!r} is truncated ({filled} of {nbytes} bytes)")
        filled += got
    return array.transpose() if fortran else array

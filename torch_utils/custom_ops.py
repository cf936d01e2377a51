"""Just-in-time build of the C++/CUDA op plugins.

- Sources are copied into a build directory named after a hash of their contents plus the torch
  and CUDA versions, under $FAKECLR_PLUGIN_DIR if set, else the dnnlib cache dir; a changed
  source or a new torch gets a fresh build, an unchanged one is loaded without compiling.
- An exclusive lock file makes several processes (DDP ranks) build once: the first builds, the
  others wait and then load the result. A lock left by a dead process of this machine is taken
  over; one held by another machine (a cache dir on a shared filesystem) is waited for.
- Verbosity: 'none' (silent), 'brief' (one line per plugin, the default), 'full' (compiler log);
  set with FAKECLR_OPS_VERBOSITY or the `verbosity` argument.

Callers normally go through torch_utils.ops.plugin_dispatch, which turns a failure here into one
warning and the reference path (or an error when FAKECLR_OPS=cuda).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import socket
import sys
import time
from types import ModuleType
from typing import Iterator, Sequence

import torch

from dnnlib import util

VERBOSITY_ENV = "FAKECLR_OPS_VERBOSITY"
PLUGIN_DIR_ENV = "FAKECLR_PLUGIN_DIR"  # where builds go (e.g. node-local disk, or one dir shared by test runs)
VERBOSITY_LEVELS = ("none", "brief", "full")
OPS_SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops")

# Each op's plugin: sources to compile and headers they include (both hashed).
OP_PLUGINS: dict[str, dict[str, list[str]]] = {
    "bias_act": {"sources": ["bias_act.cpp", "bias_act.cu"], "headers": ["bias_act.h"]},
    "upfirdn2d": {"sources": ["upfirdn2d.cpp", "upfirdn2d.cu"], "headers": ["upfirdn2d.h"]},
}
NVCC_FLAGS = ["-O3", "--use_fast_math"]  # the C++ standard is left to torch (C++17 or 20)

_loaded: dict[str, ModuleType] = {}  # one import per process; unavoidable module-level cache


def get_plugin_for_op(op_name: str, verbosity: str | None = None, require_device: bool = True) -> ModuleType:
    """Build (or reuse) and import the plugin of one of the ops in OP_PLUGINS.

    require_device=False compiles on a machine without a GPU (scripts/check_cuda_build.sh).
    """
    if op_name not in OP_PLUGINS:
        raise ValueError(f"custom_ops: no plugin is defined for {op_name!r}; known: {', '.join(OP_PLUGINS)}")
    spec = OP_PLUGINS[op_name]
    return get_plugin(f"fakeclr_{op_name}_plugin", spec["sources"], spec["headers"], OPS_SOURCE_DIR,
                      verbosity=verbosity, require_device=require_device, extra_cuda_cflags=NVCC_FLAGS)


def get_plugin(module_name: str, sources: Sequence[str], headers: Sequence[str] = (), source_dir: str = OPS_SOURCE_DIR,
               verbosity: str | None = None, require_device: bool = True, **build_kwargs) -> ModuleType:
    """Compile `sources` (paths relative to `source_dir`) into module `module_name` and import it."""
    if module_name in _loaded:
        return _loaded[module_name]
    verbosity = resolve_verbosity(verbosity)
    check_build_prerequisites(require_device)
    paths = [os.path.join(source_dir, name) for name in [*sources, *headers]]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"custom_ops: source file {path} is missing; reinstall the package")
    build_dir = build_directory(module_name, paths, build_kwargs)
    if verbosity != "none":
        print(f'Setting up CUDA plugin "{module_name}"... ', end="", flush=True, file=sys.stderr)
    try:
        with exclusive_lock(os.path.join(build_dir, ".fakeclr-build.lock")):
            copied = stage_sources(paths, build_dir)
            module = _compile_and_import(module_name, copied[: len(sources)], build_dir, verbosity, build_kwargs)
    except BaseException:
        if verbosity != "none":
            print("Failed!", file=sys.stderr, flush=True)
        raise
    if verbosity != "none":
        print("Done.", file=sys.stderr, flush=True)
    _loaded[module_name] = module
    return module


def resolve_verbosity(verbosity: str | None) -> str:
    verbosity = verbosity or os.environ.get(VERBOSITY_ENV, "brief")
    if verbosity not in VERBOSITY_LEVELS:
        raise ValueError(f"custom_ops: verbosity {verbosity!r} (or ${VERBOSITY_ENV}) must be one of "
                         f"{', '.join(VERBOSITY_LEVELS)}")
    return verbosity


def check_build_prerequisites(require_device: bool = True) -> None:
    """Raise with the reason the plugins cannot be built here."""
    if torch.version.cuda is None:
        raise RuntimeError(f"this torch {torch.__version__} build has no CUDA support")
    if require_device and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available")
    if importlib.util.find_spec("ninja") is None and shutil.which("ninja") is None:
        raise RuntimeError("ninja is not installed (pip install ninja)")


def build_directory(module_name: str, paths: Sequence[str], build_kwargs: dict) -> str:
    """Cache directory keyed by source contents, torch/CUDA versions and build options."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    for item in (torch.__version__, str(torch.version.cuda), repr(sorted(build_kwargs.items())),
                 os.environ.get("TORCH_CUDA_ARCH_LIST", "")):
        digest.update(item.encode())
    name = f"{module_name}-{digest.hexdigest()[:16]}"
    if os.environ.get(PLUGIN_DIR_ENV):
        return os.path.join(os.path.abspath(os.environ[PLUGIN_DIR_ENV]), name)
    return util.make_cache_dir_path("torch_extensions", name)


def stage_sources(paths: Sequence[str], build_dir: str) -> list[str]:
    """Copy the sources into `build_dir` (atomically, skipping identical copies); return the copies."""
    copies = []
    for path in paths:
        target = os.path.join(build_dir, os.path.basename(path))
        with open(path, "rb") as f:
            data = f.read()
        if not (os.path.isfile(target) and open(target, "rb").read() == data):
            with util.atomic_write(target, "wb") as f:
                f.write(data)
        copies.append(target)
    return copies


@contextlib.contextmanager
def exclusive_lock(lock_path: str, poll_seconds: float = 0.5, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold `lock_path` (created with O_EXCL, holding 'host pid') for the duration of the block."""
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _lock_holder_is_dead(lock_path):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock_path)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"custom_ops: waited {timeout_seconds:.0f} s for {lock_path}; "
                                   f"if no build is running, delete that file") from None
            time.sleep(poll_seconds)
    try:
        os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)


def _lock_holder_is_dead(lock_path: str) -> bool:
    try:
        with open(lock_path) as f:
            host, _, pid = f.read().strip().rpartition(" ")
        pid = int(pid or "0")
    except (FileNotFoundError, ValueError):
        return False  # being created right now, or unreadable: assume alive and keep waiting
    if pid <= 0 or (host and host != socket.gethostname()):
        return False  # another machine's process cannot be checked from here: wait for it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _compile_and_import(module_name: str, sources: Sequence[str], build_dir: str, verbosity: str,
                        build_kwargs: dict) -> ModuleType:
    from torch.utils import cpp_extension  # local: heavy import, only needed on a GPU machine

    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError("no CUDA toolkit found (nvcc); install one or set CUDA_HOME")
    with _fallback_cuda_headers(cpp_extension.CUDA_HOME):
        return cpp_extension.load(name=module_name, sources=list(sources), build_directory=build_dir,
                                  verbose=(verbosity == "full"), with_cuda=True, **build_kwargs)


@contextlib.contextmanager
def _fallback_cuda_headers(cuda_home: str) -> Iterator[None]:
    """Let the compilers find library headers that a minimal toolkit lacks (torch's ATen/cuda
    headers include cusparse.h, cublas_v2.h...) in the nvidia-* wheels installed with torch.

    They go on CPATH, which compilers search after every -I path, so the toolkit's own headers
    still win; only headers missing from the toolkit come from the wheels.
    """
    if os.path.isfile(os.path.join(cuda_home, "include", "cusparse.h")):
        yield
        return
    extra = [d for d in _pip_cuda_include_dirs() if os.path.isfile(os.path.join(d, "cusparse.h"))]
    previous = os.environ.get("CPATH")
    os.environ["CPATH"] = os.pathsep.join([*([previous] if previous else []), *extra])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CPATH", None)
        else:
            os.environ["CPATH"] = previous


def _pip_cuda_include_dirs() -> list[str]:
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for root in spec.submodule_search_locations:
        for name in sorted(os.listdir(root)):
            include = os.path.join(root, name, "include")
            if os.path.isdir(include):
                found.append(include)
    return found

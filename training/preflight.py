"""Checks that run before anything is written (and in --dry-run): output directory, dataset, resume pickle.

Each check raises ConfigError with one line `<file/option>: <what is wrong>; <how to fix>`, so a
command that cannot train fails before its run directory exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

from training.config import ConfigError, DatasetInfo

MIN_FREE_BYTES = 100 * 2 ** 20  # room for a few snapshots of a small network; big runs need far more
DATASET_SAMPLE = 16  # images decoded besides the first and the last


def check_outdir(outdir: str, min_free: int = MIN_FREE_BYTES) -> None:
    """--outdir (or its nearest existing parent) is a writable directory with some free space."""
    existing = _nearest_existing(outdir)
    if not os.path.isdir(existing):
        raise ConfigError(f"--outdir={outdir}: {existing} is a file, not a directory; choose another --outdir")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"--outdir={outdir}: cannot write in {existing} ({err.strerror}); "
                          f"choose a writable --outdir") from None
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise ConfigError(f"--outdir={outdir}: only {free / 2 ** 20:.0f} MiB free on {existing}; free space "
                          f"(at least {min_free / 2 ** 20:.0f} MiB) or choose another --outdir")


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_dataset_sample(path: str, sample: int = DATASET_SAMPLE) -> None:
    """Decode the first, the last and `sample` images spread over the dataset: one shape and mode for all."""
    from training.dataset import ImageFolderDataset

    dataset = ImageFolderDataset(path=path, use_labels=False, cache_in_ram=False)
    try:
        dataset.check_images(sample)
    except (ValueError, OSError) as err:
        raise ConfigError(f"--data={path}: {str(err).splitlines()[0]}") from None
    finally:
        dataset.close()


def fetch_resume_url(option_value: str, url: str) -> str:
    """Download a --resume URL (or preset) into the download cache now, before any run directory exists, so
    an offline machine gets one line instead of a half-made run; `-n` checks the same way. Returns the path."""
    from dnnlib import util

    try:
        cached = util.open_url(url, return_filename=True, num_attempts=1, verbose=False)
    except (OSError, ValueError) as err:
        reason = str(err).split(" (", 1)[-1].split(":", 1)[0] if " (" in str(err) else type(err).__name__
        raise ConfigError(f"--resume={option_value}: cannot download {url} ({reason}); on a machine without "
                          f"network, download it elsewhere and give its local path with --resume=PATH") from None
    return cached


def check_resume_pickle(pkl: str, info: DatasetInfo, cond: bool) -> dict:
    """Open the resume pickle with the safe loader; its networks must fit the dataset. Returns its contents."""
    from training import network_pickle

    try:
        data = network_pickle.load_network_pkl(pkl)
    except Exception as err:  # noqa: BLE001 - every refusal (UnpicklingError, ValueError, OSError, ...) is one line
        raise ConfigError(_one_line(err, pkl) + "; give a network-snapshot-*.pkl written by train.py") from None
    G = data.get("G_ema") or data.get("G")
    if G is not None:
        mismatch = _network_mismatch(G, info, cond)
        if mismatch is not None:
            raise ConfigError(f"{pkl}: {mismatch}; resume from a pickle trained on data like --data={info.name}")
    return data


def _network_mismatch(G, info: DatasetInfo, cond: bool) -> Optional[str]:
    label_dim = info.label_dim if cond else 0
    for what, theirs, ours in (("resolution", getattr(G, "img_resolution", None), info.resolution),
                               ("channels", getattr(G, "img_channels", None), info.num_channels),
                               ("label dimensions", getattr(G, "c_dim", None), label_dim)):
        if theirs is not None and theirs != ours:
            return f"the generator has {what} {theirs}, the dataset (with these options) {ours}"
    return None


def _one_line(err: BaseException, pkl: str) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if text.startswith(pkl) else f"{pkl}: {text}"

"""Checks that run before anything is written (and in --dry-run): output directory, dataset, resume pickle.

Each check raises ConfigError with one line `<file/option>: <what is wrong>; <how to fix>`, so a
command that cannot train fails before its run directory exists.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Optional

from dnnlib.util import write_probe_error
from training.config import ConfigError, DatasetInfo

MIN_FREE_BYTES = 100 * 2 ** 20  # room for a few snapshots of a small network; big runs need far more
DATASET_SAMPLE = 16  # images decoded besides the first and the last, when not every image is decoded
# Every image is decoded when the dataset holds at most this many pixels: 10,000 images of 256x256 (measured on
# one core of a shared 2-core machine, uncompressed PNGs as dataset_tool.py writes them: 0.4 ms per 64 px image,
# 0.8-1.8 ms per 256 px image, so 8-18 s for 10,000, with a progress line). A bigger set has every header and
# PNG chunk checksum read (0.2-0.5 ms per image) and a sample decoded: a start-up never costs an epoch of decoding.
FULL_DECODE_PIXELS = 10_000 * 256 * 256
PROGRESS_AFTER_S = 3.0


def check_outdir(outdir: str, min_free: int = MIN_FREE_BYTES) -> None:
    """--outdir (or its nearest existing parent) is a writable directory with some free space."""
    existing = _nearest_existing(outdir)
    if not os.path.isdir(existing):
        raise ConfigError(f"--outdir={outdir}: {existing} is a file, not a directory; choose another --outdir")
    err = write_probe_error(existing)
    if err is not None:
        raise ConfigError(f"--outdir={outdir}: cannot write in {existing} ({err.strerror}); choose a writable --outdir")
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


def check_dataset(path: str, sample: int = DATASET_SAMPLE) -> None:
    """Every image of --data: a regular file of the first image's size and mode, decoded in full when the
    whole set is at most FULL_DECODE_PIXELS (otherwise headers and PNG checksums, plus a decoded sample).
    A progress line appears when the check takes more than PROGRESS_AFTER_S seconds."""
    from training.dataset import ImageFolderDataset

    dataset = progress = None
    try:
        dataset = ImageFolderDataset(path=path, use_labels=False, cache_in_ram=False)
        num, (_, height, width) = len(dataset), dataset.image_shape
        progress = _LateProgress(label="images checked", total=num)
        decode_all = num * height * width <= FULL_DECODE_PIXELS
        dataset.check_all_images(decode=decode_all, on_progress=progress.set)
        if not decode_all:
            dataset.check_images(sample)
    except (ValueError, OSError) as err:
        raise ConfigError(f"--data={path}: {_first_line(err)}") from None
    finally:
        if progress is not None:
            progress.close()
        if dataset is not None:
            dataset.close()


class _LateProgress:
    """A ProgressBar on stderr that only appears once the work has taken PROGRESS_AFTER_S seconds."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.total = total
        self._start = time.monotonic()
        self._bar = None

    def set(self, count: int) -> None:
        if self._bar is None and time.monotonic() - self._start >= PROGRESS_AFTER_S:
            from dnnlib.progress import ProgressBar

            self._bar = ProgressBar(self.total, label=self.label, log_interval=PROGRESS_AFTER_S)
        if self._bar is not None:
            self._bar.set(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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


def newest_intact_snapshot(candidates: list[str], info: DatasetInfo, cond: bool, option: str) -> tuple[str, dict]:
    """The first of `candidates` (a folder's snapshots, newest first) that loads: a damaged newest snapshot
    (digest mismatch, truncated) is passed over with one line naming it and the one used instead."""
    damaged: list[ConfigError] = []
    for pkl in candidates:
        try:
            data = _load_resume_pickle(pkl)
        except ConfigError as err:
            damaged.append(err)
            continue
        if damaged:
            what = "a damaged snapshot (" if len(damaged) == 1 else f"{len(damaged)} damaged snapshots (newest: "
            print(f"{option}: skipping {what}{str(damaged[0]).split('; ')[0]}); resuming from "
                  f"{os.path.basename(pkl)}, the newest intact snapshot", file=sys.stderr, flush=True)
        _check_fits_dataset(pkl, data, info, cond)
        return pkl, data
    if len(candidates) == 1:  # a pickle given by name: nothing to fall back to
        raise damaged[0]
    folder = os.path.dirname(candidates[0]) or "."
    raise ConfigError(f"{option}: no intact snapshot in {folder} (newest: {str(damaged[0]).split('; ')[0]}); "
                      f"move the damaged snapshots away to restart the run from zero, or resume from a copy")


def _load_resume_pickle(pkl: str) -> dict:
    from training import checkpoint

    try:
        return checkpoint.read_snapshot(pkl)
    except Exception as err:  # noqa: BLE001 - every refusal (UnpicklingError, ValueError, OSError, ...) is one line
        raise ConfigError(_one_line(err, pkl) + "; give a network-snapshot-*.pkl written by train.py") from None


def _check_fits_dataset(pkl: str, data: dict, info: DatasetInfo, cond: bool) -> None:
    G = data.get("G_ema") or data.get("G")
    if G is not None:
        mismatch = _network_mismatch(G, info, cond)
        if mismatch is not None:
            raise ConfigError(f"{pkl}: {mismatch}; resume from a pickle trained on data like --data={info.name}")


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

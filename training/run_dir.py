"""The files of one run directory: snapshot and grid names, the newest snapshot, stale temp files.

Snapshot names keep upstream's `network-snapshot-<kimg:06d>.pkl` (the whole kimg, rounded down)
when ticks are 1 kimg or longer and no file of the run has that name yet. With shorter ticks the kimg
gets three decimals, `network-snapshot-000000.064.pkl` (the exact image count), in every name of the
run, so the names still sort in training order; so does a snapshot whose whole kimg is taken (a run
continued with `--kimg=6.2` after a 6-kimg end, a last tick shorter than 1 kimg). A snapshot is never
overwritten. Everything here reads both forms and orders snapshots by the image count, never by the text.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
from typing import Any, Iterator, Optional

from dnnlib.util import atomic_write, write_probe_error
from torch_utils import load_budget
from training.config import ConfigError

OPTIONS_FILE = "training_options.json"
_SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d{6,})(?:\.(\d{3}))?\.pkl$")
_RUN_RE = re.compile(r"^(\d+)-")


def kimg_label(nimg: int, kimg_per_tick: float) -> str:
    """`000004` (upstream) for 4032 images with ticks of >= 1 kimg; `000004.032` with shorter ticks."""
    kimg, rest = divmod(int(nimg), 1000)
    return f"{kimg:06d}" if kimg_per_tick >= 1 else f"{kimg:06d}.{rest:03d}"


def snapshot_name(nimg: int, kimg_per_tick: float) -> str:
    return snapshot_file(kimg_label(nimg, kimg_per_tick))


def fakes_grid_name(nimg: int, kimg_per_tick: float) -> str:
    return fakes_grid_file(kimg_label(nimg, kimg_per_tick))


def snapshot_file(label: str) -> str:
    return f"network-snapshot-{label}.pkl"


def fakes_grid_file(label: str) -> str:
    return f"fakes{label}.png"


def free_tick_label(run_dir: str, nimg: int, kimg_per_tick: float) -> str:
    """The label of this tick's snapshot and fakes grid: the usual one (kimg_label) unless a file of the run
    already has it, then the exact image count. An existing snapshot is never overwritten (RunWriteError); a
    grid alone with the exact label is the orphan of a killed tick that training now redoes, and is replaced."""
    exact = kimg_label(nimg, 0)
    for label in dict.fromkeys((kimg_label(nimg, kimg_per_tick), exact)):
        names = (snapshot_file(label), fakes_grid_file(label))
        if not any(os.path.lexists(os.path.join(run_dir, name)) for name in names):
            return label
    taken = os.path.join(run_dir, snapshot_file(exact))
    if not os.path.lexists(taken):
        return exact
    raise RunWriteError(f"{taken}: a snapshot of {nimg} images already exists and is kept; continue from "
                        f"the newest snapshot (--resume=latest) or train into another --outdir")


def snapshot_nimg(path: str) -> Optional[int]:
    """The image count a snapshot name encodes (whole kimg rounded down in upstream's form), or None for
    any other file. The one parser of snapshot names: everything that reads them calls this."""
    match = _SNAPSHOT_RE.match(os.path.basename(path))
    if match is None:
        return None
    return int(match.group(1)) * 1000 + int(match.group(2) or 0)


def list_snapshots(run_dir: str) -> list[str]:
    """The run's snapshots, oldest first (temp files and other names never count)."""
    paths = [p for p in glob.glob(os.path.join(glob.escape(run_dir), "network-snapshot-*.pkl"))
             if snapshot_nimg(p) is not None and os.path.isfile(p)]
    return sorted(paths, key=snapshot_nimg)


def newest_snapshot(run_dir: str) -> Optional[str]:
    snapshots = list_snapshots(run_dir)
    return snapshots[-1] if snapshots else None


def remove_stale_temp_files(run_dir: str) -> list[str]:
    """Delete the `.<name>.<random>.tmp` files a killed run left behind (atomic_write's temp names)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), ".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------
# Run directories in --outdir.


def run_number(path: str) -> int:
    match = _RUN_RE.match(os.path.basename(path.rstrip("/")))
    return int(match.group(1)) if match else -1


def runs_newest_first(outdir: str) -> list[str]:
    """Numbered run directories that hold a training_options.json, newest (highest number) first."""
    if not os.path.isdir(outdir):
        return []
    runs = [os.path.join(outdir, name) for name in os.listdir(outdir) if run_number(name) >= 0]
    runs = [run for run in runs if os.path.isfile(os.path.join(run, OPTIONS_FILE))]
    return sorted(runs, key=run_number, reverse=True)


def read_options(run_dir: str) -> dict:
    path = os.path.join(run_dir, OPTIONS_FILE)
    return load_budget.read_json(path, path)  # bounded: OverBudget and JSONDecodeError are ValueErrors


def write_options(run_dir: str, opts: dict) -> None:
    with atomic_write(os.path.join(run_dir, OPTIONS_FILE), "w") as f:
        json.dump(opts, f, indent=2)


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, OPTIONS_FILE))


# ----------------------------------------------------------------------------
# A write that fails (disk full, permissions) stops the run with one line; earlier files stay intact.


class RunWriteError(RuntimeError):
    """A run-directory file could not be written; the message is the one line to print."""


class TrainingDiverged(RuntimeError):
    """The losses were non-finite for a whole tick: training stops without a snapshot; str() is one line."""


def write_failure_message(path: str, err: OSError) -> str:
    reason = err.strerror or str(err)
    fix = "fix the permissions" if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "free space"
    return f"{path}: cannot write ({reason}); {fix}, then --resume=latest"


@contextlib.contextmanager
def reporting_write_errors(path: str) -> Iterator[None]:
    """Turn an OSError while writing `path` into a RunWriteError naming it (atomic_write keeps the old file)."""
    try:
        yield
    except OSError as err:
        raise RunWriteError(write_failure_message(path, err)) from None


# ----------------------------------------------------------------------------
# One training process per run directory (continuing a run reuses its directory).

LOCK_FILE = ".train.lock"


def hold_run_lock(run_dir: str) -> Any:
    """Take the run directory's lock while this process trains (the OS drops it on any exit, SIGKILL too).
    Returns the open lock file; keep a reference to it."""
    handle = _locked(run_dir)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")  # for the curious; the lock itself is the flock
    handle.flush()
    return handle


def check_writable(run_dir: str, option: str) -> None:
    """A run to continue must take new files (lock, snapshots, logs); a read-only one is refused up front."""
    err = write_probe_error(run_dir)
    if err is not None:
        raise ConfigError(f"{option}: cannot write in {run_dir} ({err.strerror or err}); make the run directory "
                          f"writable, or start a new run from its snapshot with --resume-mode=new")


def check_not_in_use(run_dir: str) -> None:
    """Raise RunInUse if a live process holds the run directory's lock (the lock file is only opened)."""
    if os.path.exists(os.path.join(run_dir, LOCK_FILE)):
        _locked(run_dir).close()


def _locked(run_dir: str) -> Any:
    """A POSIX record lock: owned by this process alone (forked loader workers do not inherit it, unlike
    flock's), and dropped by the OS when the process ends."""
    import fcntl

    try:
        handle = open(os.path.join(run_dir, LOCK_FILE), "a+")  # noqa: SIM115 - the caller keeps or closes it
    except OSError as err:  # a read-only run directory (or lock file): training there could write nothing
        raise ConfigError(f"{run_dir}: cannot open its lock file {LOCK_FILE} ({err.strerror or err}); make the run "
                          f"directory writable, or start a new run from its snapshot with --resume-mode=new") from None
    try:
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunInUse(f"{run_dir}: another train.py is training in this run directory; wait for it to finish "
                       f"or stop it (SIGTERM snapshots), then --resume=latest") from None
    return handle


def release_run_lock(handle: Any) -> None:
    """Drop the lock and its file at the end of a run (a killed run leaves a file that locks nothing)."""
    with contextlib.suppress(OSError):
        os.remove(handle.name)
    handle.close()


class RunInUse(ConfigError):
    """The run directory is being trained by another process; the message is one line."""

"""A comparison's state: results.json (read, checked, written atomically) and its run directories and snapshots."""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import re
import subprocess
from typing import Optional

import click

from compare.presets import REPO, Settings, method_runs_dir
from dnnlib.util import atomic_write
from torch_utils import load_budget

STATE_VERSION = 1


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return f"{len(names)} x {names[0]} (CUDA); {os.cpu_count()} CPU cores"
    except Exception:  # noqa: BLE001 - a description only
        pass
    return f"CPU only ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def load_state(settings: Settings) -> dict:
    path = os.path.join(settings.outdir, "results.json")
    if not os.path.isfile(path):
        return dict(version=STATE_VERSION, created=now(), methods={})
    try:
        state = load_budget.read_json(path, path)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not an object")
    except (OSError, ValueError) as err:
        raise click.ClickException(f"{path}: not a readable comparison state ({load_budget.first_line(err)}); "
                                   f"restore it or use another --outdir") from None
    old = state.get("settings", {})
    old_key = {k: old.get(k) for k in settings.training_key()}
    if old and old_key != settings.training_key():
        diff = ", ".join(f"{k}: {old_key[k]!r} -> {v!r}" for k, v in settings.training_key().items() if old_key[k] != v)
        raise click.ClickException(f"{path} holds a comparison with other training settings ({diff}); "
                                   f"use another --outdir or repeat the original options")
    return state


def save_state(state: dict, settings: Settings) -> None:
    state["updated"] = now()
    with atomic_write(os.path.join(settings.outdir, "results.json"), "w") as f:
        json.dump(state, f, indent=2, allow_nan=True)
        f.write("\n")


def run_number(path: str) -> int:
    match = re.match(r"^(\d+)-", os.path.basename(path))
    return int(match.group(1)) if match else -1


def run_dirs(settings: Settings, method: str) -> list[str]:
    found = [d for d in glob.glob(os.path.join(method_runs_dir(settings, method), "*")) if os.path.isdir(d)]
    return sorted((d for d in found if run_number(d) >= 0), key=run_number)


def snapshots(settings: Settings, method: str) -> list[str]:
    """Every snapshot of the method, oldest run first, then by name."""
    return [path for run in run_dirs(settings, method) for path in sorted(glob.glob(os.path.join(run, "network-snapshot-*.pkl")))]


def fingerprint(path: str) -> list[int]:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


def load_snapshot(path: str) -> tuple[int, dict]:
    """(cur_nimg, snapshot dict) read with the safe loader."""
    from training.network_pickle import load_network_pkl

    data = load_network_pkl(path)
    state = data.get("resume_state") or {}
    nimg = state.get("cur_nimg")
    if nimg is None:  # not one of our snapshots: fall back on the kimg in the name
        match = re.search(r"(\d+)\.pkl$", path)
        nimg = int(match.group(1)) * 1000 if match else 0
    return int(nimg), data


def snapshot_nimg(path: str, record: Optional[dict]) -> int:
    if record is not None and record.get("fingerprint") == fingerprint(path) and "nimg" in record:
        return int(record["nimg"])
    return load_snapshot(path)[0]


def rel(settings: Settings, path: str) -> str:
    return os.path.relpath(path, settings.outdir)


def method_record(state: dict, method: str) -> dict:
    return state["methods"].setdefault(method, dict(status="pending", run_dirs=[], commands=[], snapshots={},
                                                    train_seconds=0.0, eval_seconds=0.0))


def git_commit() -> str:
    """HEAD of the repository, with +dirty when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")

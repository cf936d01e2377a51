"""A comparison's state: results.json (read, checked, written atomically) and its run directories and snapshots."""

from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import subprocess
from typing import Optional

from scripts.compare.errors import HarnessError
from scripts.compare.presets import REPO, Settings, method_runs_dir
from dnnlib.util import atomic_write
from torch_utils import load_budget
from training import run_dir as rundir

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


def read_results_json(path: str, containers: dict[str, type], fix: str) -> dict:
    """A results file as a dict whose `containers` keys (when present) hold a dict/list of dicts; a file that
    is not such JSON (truncated, edited, another file) is one line naming it, never a traceback."""
    def refuse(what: str) -> HarnessError:
        return HarnessError(f"{path}: {what}; {fix}")

    try:
        data = load_budget.read_json(path, path)  # size-capped before it is read
    except load_budget.OverBudget as err:
        raise refuse(load_budget.first_line(err).removeprefix(f"{path}: ")) from None
    except OSError as err:
        raise refuse(f"cannot read it ({err.strerror or err})") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise refuse(f"not valid JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise refuse(f"holds a JSON {type(data).__name__}, not an object")
    for key, kind in containers.items():
        value = data.get(key, kind())
        entries = value.values() if isinstance(value, dict) else value
        if not isinstance(value, kind) or (kind is dict and not all(isinstance(e, dict) for e in entries)):
            raise refuse(f"its {key!r} entry is malformed (expected a JSON {'object of objects' if kind is dict else 'list'})")
    if not isinstance(data.get("settings", {}), dict):
        raise refuse("its 'settings' entry is not an object")
    return data


def load_state(settings: Settings) -> dict:
    path = os.path.join(settings.outdir, "results.json")
    if not os.path.isfile(path):
        return dict(version=STATE_VERSION, created=now(), methods={})
    state = read_results_json(path, {"methods": dict}, fix="move it away (the runs stay; scoring starts again) "
                                                           "or use another --outdir")
    old = state.get("settings", {})
    old_key = {k: old.get(k) for k in settings.training_key()}
    if old and old_key != settings.training_key():
        diff = ", ".join(f"{k}: {old_key[k]!r} -> {v!r}" for k, v in settings.training_key().items() if old_key[k] != v)
        raise HarnessError(f"{path} holds a comparison with other training settings ({diff}); "
                                   f"use another --outdir or repeat the original options")
    return state


def save_state(state: dict, settings: Settings) -> None:
    state["updated"] = now()
    with atomic_write(os.path.join(settings.outdir, "results.json"), "w") as f:
        json.dump(state, f, indent=2, allow_nan=True)
        f.write("\n")


run_number = rundir.run_number  # one parser of run directory names


def run_dirs(settings: Settings, method: str) -> list[str]:
    found = [d for d in glob.glob(os.path.join(method_runs_dir(settings, method), "*")) if os.path.isdir(d)]
    return sorted((d for d in found if run_number(d) >= 0), key=run_number)


def snapshots(settings: Settings, method: str) -> list[str]:
    """Every snapshot of the method, oldest run first, then in training order."""
    return [path for run in run_dirs(settings, method) for path in rundir.list_snapshots(run)]


def fingerprint(path: str) -> list[int]:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


def load_snapshot(path: str) -> tuple[int, dict]:
    """(cur_nimg, snapshot dict) read with the safe loader."""
    from training.network_pickle import load_network_pkl

    data = load_network_pkl(path)
    state = data.get("resume_state") or {}
    nimg = state.get("cur_nimg")
    if nimg is None:  # not one of our snapshots: fall back on the image count in the name
        nimg = rundir.snapshot_nimg(path) or 0
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

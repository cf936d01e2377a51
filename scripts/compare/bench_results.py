"""The committed results file of a benchmark: one entry per run, portable across machines.

An entry holds everything needed to report the run and to decide, on another machine, whether it
must run again: the options that define it (the training key without machine paths, plus the
scoring key), the per-snapshot scores, final and best points, wall times, the git commit, the
thread count and the load average at start and end of training (the machine is shared: slow runs
should be explainable). Run directories are NOT in it; they stay local.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

from scripts.compare.errors import HarnessError
from scripts.compare.presets import Settings
from scripts.compare.scores import evaluator_name
from scripts.compare.state import device_description, git_commit, now, read_results_json
from dnnlib.util import atomic_write
from training import run_dir as rundir

VERSION = 1
RESULTS_CONTAINERS = {"runs": dict, "expected": list}
RESULTS_FIX = "restore it from git or use --results"


def run_key(kind: str, dataset: str, method: str, seed: int) -> str:
    key = f"{dataset}/{method}/seed{seed}"
    return f"curve/{key}" if kind == "curve" else key


def load(path: str, preset: str) -> dict:
    if not os.path.isfile(path):
        return dict(version=VERSION, benchmark=preset, created=now(), runs={}, expected=[])
    results = read_results_json(path, RESULTS_CONTAINERS, fix=RESULTS_FIX)
    if results.get("benchmark") != preset:
        raise HarnessError(f"{path}: holds the benchmark {results.get('benchmark')!r}, not {preset!r}; "
                                   f"use another --results")
    results.setdefault("expected", [])
    return results


def save(path: str, results: dict) -> None:
    """Write the file, first taking over what another harness recorded since we read it (newer entries win).
    A file whose content would not change is left alone, its `updated` time too (a tracked file stays clean)."""
    disk = None
    if os.path.isfile(path):
        disk = read_results_json(path, RESULTS_CONTAINERS, fix=RESULTS_FIX)
        for key, run in disk.get("runs", {}).items():
            mine = results["runs"].get(key)
            if mine is None or run.get("recorded", "") > mine.get("recorded", ""):
                results["runs"][key] = run
        merge_expected(results, disk.get("expected", []))
        if _content(disk) == _content(results):
            results["updated"] = disk.get("updated", results.get("updated"))
            return
    results["updated"] = now()
    with atomic_write(path, "w") as f:
        json.dump(results, f, indent=2, allow_nan=True)
        f.write("\n")


def _content(results: dict) -> str:
    """Everything but the time of writing, comparable even with NaN scores (NaN != NaN as floats)."""
    return json.dumps({k: v for k, v in results.items() if k != "updated"}, sort_keys=True, allow_nan=True)


def portable_options(settings: Settings, evaluator: Callable) -> dict:
    """What defines a run, without machine-specific paths (the data is named by name, size and resolution)."""
    training = settings.training_key()
    training.pop("data")
    scoring = settings.eval_key(evaluator_name(evaluator))
    scoring.pop("eval_data")
    if settings.stop_kimg is not None:  # the runs of this file stop part-way through the kimg schedule
        training["stop_kimg"] = settings.stop_kimg
    return dict(training, dataset=settings.dataset_name, dataset_size=settings.dataset_size,
                resolution=settings.dataset_resolution, **scoring)


def check_options(path: str, key: str, recorded: dict, settings: Settings, evaluator: Callable) -> None:
    """A recorded run must have been made with the options asked for now (else the table would mix protocols)."""
    old, new = recorded.get("options", {}), portable_options(settings, evaluator)
    diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if diff:
        raise HarnessError(f"{path}: run {key} was recorded with other options ({', '.join(diff)}); "
                                   f"repeat the recorded options or use another --results file")


def record_run(results: dict, key: str, kind: str, settings: Settings, method: str, record: dict,
               finished: bool) -> dict:
    """Copy one run (its comparison record) into the results file; status done only when trained and scored."""
    snapshots = record.get("snapshots", {})
    seconds = {s["nimg"]: s.get("eval_seconds") for s in snapshots.values()}
    curve = [dict(kimg=p["kimg"], fid=p["fid"], kid=p["kid"], eval_seconds=seconds.get(round(p["kimg"] * 1000)))
             for p in record.get("curve", [])]
    evaluator = (record.get("eval") or {}).get("evaluator", settings.evaluator)
    entry = dict(
        kind=kind, dataset=settings.dataset_name, dataset_size=settings.dataset_size, method=method, seed=settings.seed,
        status="done" if finished and record.get("status") == "done" else "partial",
        kimg=record.get("kimg", 0.0), target_kimg=settings.end_kimg,
        options=portable_options(settings, _Named(evaluator)), data=os.path.basename(settings.data),
        curve=curve, final=_point(record.get("final")), best=_point(record.get("best")),
        train_seconds=round(record.get("train_seconds", 0.0), 1), eval_seconds=round(record.get("eval_seconds", 0.0), 1),
        commands=list(record.get("commands", [])), run_dirs=list(record.get("run_dirs", [])),
        local_dir=os.path.relpath(settings.outdir, bench_root(settings.outdir)),
        git_commit=training_commit(record), threads=settings.threads or _env_threads(),
        load_average=dict(start=record.get("load_average_start"), end=record.get("load_average_end")),
        device=device_description(), recorded=now())
    results["runs"][key] = entry
    return entry


def bench_root(cell_dir: str) -> str:
    """The benchmark's --outdir, from one cell's directory <outdir>/<kind>/<dataset>/seed<k>."""
    return os.path.dirname(os.path.dirname(os.path.dirname(cell_dir)))


def training_commit(record: dict) -> str:
    """The commit(s) the run's train.py processes started from (the harness's own, for older records)."""
    commits = list(dict.fromkeys(record.get("train_commits", [])))
    return ",".join(commits) if commits else git_commit()


class _Named:
    """Stands for an evaluator by its recorded name (portable_options needs only the name)."""

    def __init__(self, name: str):
        self.name = name


def _point(point: Optional[dict]) -> Optional[dict]:
    return None if point is None else dict(kimg=point["kimg"], fid=point["fid"], kid=point["kid"])


def _env_threads() -> Optional[int]:
    value = os.environ.get("OMP_NUM_THREADS")
    return int(value) if value and value.isdigit() else None


def local_data(outdir: str, data_name: str) -> str:
    return os.path.join(outdir, "data", data_name)


def final_snapshot(results: dict, outdir: str, dataset: str, method: str, seed: int) -> Optional[str]:
    """Path of the newest local snapshot of a recorded run, or None when its run directory is not on this machine."""
    entry = results["runs"].get(run_key("bench", dataset, method, seed))
    if entry is None:
        return None
    cell = os.path.join(outdir, entry["local_dir"])
    found: list[str] = []
    for run_dir in entry.get("run_dirs", []):
        found += rundir.list_snapshots(os.path.join(cell, run_dir))
    return max(found, key=lambda p: (rundir.snapshot_nimg(p), p)) if found else None  # by images, not by text


def expected_keys(datasets: list[str], methods: list[str], seeds: list[int]) -> list[str]:
    return [run_key("bench", d, m, s) for d in datasets for s in seeds for m in methods]


def merge_expected(results: dict, keys: list[str]) -> None:
    known = list(results.get("expected", []))
    results["expected"] = known + [k for k in keys if k not in known]


def runs_of(results: dict, kind: str = "bench") -> dict[str, Any]:
    return {k: r for k, r in results["runs"].items() if r.get("kind") == kind}

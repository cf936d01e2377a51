"""Run loader cases in a fresh subprocess and report, per case, the outcome, the peak RSS so far and the time.

The bomb and fuzz tests build their files in the test process (cheap) and load them here, in one child process, so
that the peak resident memory (VmHWM) belongs to the loading alone and not to whatever pytest ran before. A case is
`(name, loader, path)`; a loader is one of LOADERS below, named by string so the cases can cross the process
boundary as JSON. The child prints one JSON line per case: {"name", "outcome", "error", "message", "hwm_kib",
"seconds"}, outcome being "ok", "refused" (an exception of the loader's documented one-line classes) or "escaped"
(any other exception: a bug).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _load_network(path: str) -> None:
    from training.network_pickle import load_network_pkl
    load_network_pkl(path)


def _load_detector(path: str) -> None:
    from metrics import tensor_unpickler
    tensor_unpickler.read_tensor_tree(path)


def _load_numpy_pickle(path: str) -> None:
    from metrics import tensor_unpickler
    tensor_unpickler.load_numpy_pickle(path)


def _load_projected_w(path: str) -> None:
    import generate
    generate.load_projected_w(path, types.SimpleNamespace(num_ws=4, w_dim=8))  # the shape the fixtures write


def _load_stats_cache(path: str) -> None:
    from metrics.feature_stats import FeatureStats
    FeatureStats.load(path, expected_items=16)  # the item count the fixtures write


def _open_dataset_source(path: str) -> None:
    import dataset_tool
    with dataset_tool.open_source(path) as (_, items):
        for item in items:
            item.read()


def _open_training_set(path: str) -> None:
    from training.dataset import ImageFolderDataset
    ImageFolderDataset(path, use_labels=True)


LOADERS = {
    "network": (_load_network, "training.network_pickle.NetworkPickleError"),
    "detector": (_load_detector, "pickle.UnpicklingError"),  # WeightFileError and OversizedRecord are both
    "numpy_pickle": (_load_numpy_pickle, "pickle.UnpicklingError"),
    "projected_w": (_load_projected_w, "click.BadParameter"),
    "stats_cache": (_load_stats_cache, "metrics.feature_stats.InvalidCache"),
    "dataset_tool": (_open_dataset_source, "click.ClickException"),
    "training_set": (_open_training_set, "builtins.ValueError"),
}


def _documented(qualname: str) -> type:
    module, _, name = qualname.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def child(cases: list[list[str]]) -> None:
    sys.path.insert(0, REPO)
    for name, loader, path in cases:
        load, error_name = LOADERS[loader]
        start = time.perf_counter()
        result = {"name": name, "outcome": "ok", "error": "", "message": ""}
        try:
            load(path)
        except BaseException as error:  # noqa: BLE001 - classifying every outcome is the point
            documented = isinstance(error, _documented(error_name))
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            result.update(outcome="refused" if documented else "escaped", error=type(error).__name__,
                          message=message if documented else traceback.format_exc()[-2000:])
        result.update(hwm_kib=_peak_kib(), seconds=time.perf_counter() - start)
        print(json.dumps(result), flush=True)


def run_cases(cases: list[tuple[str, str, str]], timeout: float = 300) -> dict[str, dict]:
    """Outcome per case name, from one child process (one thread, like the suite)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    script = f"import sys, json; sys.path.insert(0, {REPO!r}); sys.path.insert(0, {os.path.dirname(__file__)!r}); " \
             f"import bounded_runner; bounded_runner.child(json.load(sys.stdin))"
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps([list(c) for c in cases]), env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["name"]] = record
    missing = [name for name, _, _ in cases if name not in results]
    assert not missing, f"child died before {missing[:3]}: rc={done.returncode} stderr={done.stderr[-3000:]}"
    return results

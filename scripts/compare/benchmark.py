"""A multi-seed benchmark: datasets x methods x seeds, resumable across sessions and machines.

Each (dataset, seed) is one ordinary comparison (scripts/compare/comparison.py) under --outdir, which
holds the run directories and a local results.json; they never leave the machine. Every run that
finishes (trained to the budget, every snapshot scored) is copied, with its options, seed, wall time,
git commit, thread count and load average, into ONE results file meant to be committed
(bench_results.py). A rerun on any machine skips the runs that file records; a run that is not
recorded resumes from its newest snapshot when its run directory exists locally, else starts over.

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
from scripts.compare import bench_diagnostics, bench_results
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
    seeds: tuple[int, ...]
    methods: str
    results: str  # committed results file, relative to the repository root
    curve: Optional[CurveSpec] = None  # the budget run of --stage=curve, where the benchmark has one


BENCHMARKS = {
    "cpu-bench": BenchmarkSpec(
        datasets=("datasets/emoji-smileys", "datasets/emoji-food"), resolution=32, seeds=(0, 1, 2),
        methods="ada,adalinear,insgen,fakeclr", results="examples/cpu-bench/results.json",
        curve=CurveSpec(dataset=0, method="adalinear", seed=0, kimg=60, tick=0.5, snap=2, score_every=4)),
    # Where D overfits (issue 26, item 3): the bench stage is the long noaug and ADA runs themselves.
    "cpu-regime": BenchmarkSpec(
        datasets=("datasets/emoji-smileys",), resolution=32, seeds=(0,), methods="noaug,ada-kimg100",
        results="examples/cpu-regime/results.json"),
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
                  log: Callable = print) -> dict:
    """Train, score and record every planned run not yet in the results file; write the report. Returns the file."""
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
    jobs = pending_jobs(runs, results, results_path, evaluator, plan.harness_command, log)
    recorder = _recorder(results, results_path, {id(job): run for job, run in jobs}, log)
    try:
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
    if plan.stage == "bench":  # the table's full set of runs, so that missing ones show as pending
        bench_results.merge_expected(results, bench_results.expected_keys(
            sorted({r.settings.dataset_name for r in runs}), parse_methods(spec.methods) + sorted(
                {r.method for r in runs} - set(parse_methods(spec.methods))), sorted({r.settings.seed for r in runs}
                                                                                      | set(spec.seeds))))


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
    methods = parse_methods(plan.methods or spec.methods)
    seeds = parse_seeds(plan.seeds) if plan.seeds else list(spec.seeds)
    return [run for path in data for seed in seeds for run in _cell_runs("bench", path, seed, methods, preset, outdir, options)]


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


def _recorder(results: dict, results_path: str, runs: dict[int, PlannedRun], log: Callable) -> Callable[[Job], None]:
    """on_scored callback: copy the run into the committed results file (atomically) and say so."""
    def record(job: Job) -> None:
        run = runs[id(job)]
        trained, _, _ = training_status(job.settings, job.method, method_record(job.state, job.method))
        entry = bench_results.record_run(results, run.key, run.kind, job.settings, job.method,
                                         method_record(job.state, job.method), finished=trained)
        save_state(job.state, job.settings)
        bench_diagnostics.attach({"runs": {run.key: entry}}, bench_results.bench_root(job.settings.outdir),
                                 log=lambda _: None)
        bench_results.save(results_path, results)
        log(f"[{run.key}] {entry['status']}: recorded in {os.path.relpath(results_path)}")
    return record


def finish(results_path: str, results: dict, plan: BenchOptions, outdir: str, log: Callable) -> dict:
    """The report beside the results file (and, when asked, the latent-continuity step)."""
    from scripts.compare import bench_report

    bench_diagnostics.attach(results, outdir, log)
    bench_results.save(results_path, results)
    bench_report.write_report(results, os.path.dirname(results_path), outdir, log=log)
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

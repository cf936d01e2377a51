"""One comparison: every method trained (resuming what an earlier call left) and every snapshot scored."""

from __future__ import annotations

from dataclasses import asdict
import os
from typing import Callable, Optional

from scripts.compare.errors import HarnessError
from scripts.compare.presets import Settings, format_number, short_path
from scripts.compare.report import fmt, write_reports
from scripts.compare.runs import ChildProcesses, Job, train_in_parallel, train_sequentially
from scripts.compare.scores import evaluate_method, snapshots_to_score, evaluator_metric_names, evaluator_name, make_evaluator
from scripts.compare.state import device_description, fingerprint, load_state, method_record, rel, save_state


def run_comparison(settings: Settings, evaluator: Optional[Callable] = None, log: Callable = print,
                   harness_command: Optional[str] = None) -> dict:
    """Train and score every method (resuming whatever an earlier call left); returns the results.json content.

    evaluator(G_ema, dataset_kwargs, num_gen) -> {'fid': float, 'kid': float}; default: Inception (or
    --evaluator=colour). Optional attributes: `name` (recorded; a change re-scores every snapshot) and
    `metric_names(num_gen)` (labels such as 'fid500_full').
    """
    evaluator = evaluator or make_evaluator(settings)
    state = open_comparison(settings, evaluator, harness_command)
    stop = "" if settings.stop_kimg is None else f" (stopping at {format_number(settings.stop_kimg)})"
    log(f"Comparison in {settings.outdir}: methods {', '.join(settings.methods)}; {format_number(settings.kimg)} kimg "
        f"each{stop}; {settings.num_gen} fakes per score" + (f"; {settings.kimg_note}" if settings.kimg_note else ""))
    jobs = [Job(settings, state, method) for method in pending_methods(settings, state, evaluator, log)]
    train_and_score(jobs, settings.parallel, evaluator, log)
    write_reports(settings, state)
    save_state(state, settings)
    return state


def open_comparison(settings: Settings, evaluator: Callable, harness_command: Optional[str] = None) -> dict:
    """The comparison's results.json (created, or checked against the settings), with this call's settings."""
    os.makedirs(settings.outdir, exist_ok=True)
    state = load_state(settings)
    state["settings"] = asdict(settings)
    state["settings"]["outdir"] = short_path(settings.outdir)
    state["evaluator"] = evaluator_name(evaluator)
    state["metric_names"] = list(evaluator_metric_names(evaluator, settings.num_gen))
    state["device"] = device_description()
    if harness_command:
        state["harness_command"] = harness_command
    for method in settings.methods:
        method_record(state, method)
    save_state(state, settings)
    return state


def pending_methods(settings: Settings, state: dict, evaluator: Callable, log: Callable) -> list[str]:
    """Methods not yet trained and scored with the current settings."""
    eval_key = settings.eval_key(evaluator_name(evaluator))
    pending = []
    for method in settings.methods:
        record = method_record(state, method)
        if record.get("status") == "done" and record.get("eval") == eval_key and all_scored(settings, method, record):
            log(f"[{method}] done earlier: final FID {fmt((record.get('final') or {}).get('fid'))}; skipped")
            continue
        pending.append(method)
    return pending


def train_and_score(jobs: list[Job], parallel: int, evaluator: Callable, log: Callable,
                    on_scored: Optional[Callable[[Job], None]] = None) -> None:
    """Train every job (parallel > 1: several at once), then score its snapshots as soon as it finishes."""
    def score(job: Job) -> None:
        evaluate_method(job.settings, job.state, job.method, evaluator, log)
        write_reports(job.settings, job.state)
        if on_scored is not None:
            on_scored(job)

    with ChildProcesses() as children:
        if parallel > 1:
            train_in_parallel(jobs, parallel, children, log, on_trained=score)
        else:
            for job in jobs:
                train_sequentially(job.settings, job.state, job.method, children, log)
                if children.signalled is not None:
                    break
                score(job)
        if children.signalled is not None:
            raise HarnessError("interrupted; rerun the same command to resume")


def all_scored(settings: Settings, method: str, record: dict) -> bool:
    """A 'done' method stays done unless its snapshots changed (e.g. a run was extended)."""
    scored = record.get("snapshots", {})
    return all(scored.get(rel(settings, p), {}).get("fingerprint") == fingerprint(p)
               for p in snapshots_to_score(settings, method))

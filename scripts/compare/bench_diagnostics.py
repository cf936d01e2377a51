"""Why a method helps or not: per-tick training statistics of every benchmark run, from its stats.jsonl.

The FID table says *whether* FakeCLR beats ADA-Linear; these numbers say *why*, so that a negative
result points at a cause instead of a guess:

- overfitting of D: ADA's p and the sign statistic r_t = E[sign(D(real))] (the heuristic ADA steers
  to 0.6), and the gap between D's mean real and fake scores;
- the contrastive term: its InfoNCE loss next to the loss of a head that cannot tell the positive
  from the negatives, log(1 + K) with K negatives in play (the loss "moves" when it falls below that),
  the head's top-1 instance accuracy, the fake queue's effective length, and the nats the
  forgetting term adds.

Each run's record in the results file gets `diagnostics`: one dict per tick with the short names of
DIAGNOSTIC_STATS, and a `train_seconds` that counts every training segment from its own log (the harness
times only the segments that end normally, so a run interrupted by a kill would look cheaper than it was).
Runs whose directory is not on this machine keep what they had.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

from scripts.compare import bench_stats
from training import run_dir as rundir

# short name in the results file -> stats.jsonl key
DIAGNOSTIC_STATS = {
    "augment_p": "Progress/augment",
    "rt": "Loss/signs/real",
    "score_real": "Loss/scores/real",
    "score_fake": "Loss/scores/fake",
    "cl_fake_D": "Loss/CL/fake_D",
    "cl_fake_G": "Loss/CL/fake_G",
    "cl_real_D": "Loss/CL/real_D",
    "fake_negatives": "Loss/contrastive/fake_negatives",
    "fake_chance": "Loss/contrastive/fake_chance_nats",
    "fake_top1": "Loss/contrastive/fake_top1",
    "real_chance": "Loss/contrastive/real_chance_nats",
    "real_top1": "Loss/contrastive/real_top1",
    "margin_nats": "Loss/contrastive/fake_margin_nats",
}

# (column title, short name, digits) of the report's table; the value is the mean of the last TAIL ticks
COLUMNS = (("ADA p", "augment_p", 3), ("r_t", "rt", 2), ("D real − fake", "score_gap", 2),
           ("CL fake_D tick 1", "cl_fake_D@first", 2), ("CL fake_D", "cl_fake_D", 2),
           ("log(1+K)", "fake_chance", 2), ("K", "fake_negatives", 0), ("top-1", "fake_top1", 2),
           ("CL fake_G", "cl_fake_G", 2), ("forgetting nats", "margin_nats", 3), ("CL real_D", "cl_real_D", 2),
           ("real top-1", "real_top1", 2))
TAIL = 3  # ticks averaged for the "end of training" value (a quarter of the 12-tick benchmark)


def read_run_logs(run_dirs: list[str]) -> tuple[list[dict], float]:
    """(one dict per tick of the trajectory the run finished on, train.py's clock summed over every directory).

    Ticks: kimg + the DIAGNOSTIC_STATS present. The directories are read oldest first (by run number: a results
    file lists them in the order a harness found them). A resumed directory starts again from a snapshot, so the
    ticks an interrupted directory logged past that point belong to a continuation that was thrown away: they
    are dropped, not averaged in. Seconds: `Timing/total_sec` of the last tick each directory logged, killed
    segments and the ticks a resume trained again included, since that time was spent.
    """
    ticks: list[dict] = []
    seconds = 0.0
    for run_dir in sorted(run_dirs, key=rundir.run_number):
        continued, last_total_sec = _read_log(os.path.join(run_dir, "stats.jsonl"))
        seconds += last_total_sec
        if continued:
            ticks = [tick for tick in ticks if tick["kimg"] < continued[0]["kimg"]]
        ticks += continued
    return ticks, seconds


def _read_log(path: str) -> tuple[list[dict], float]:
    """(ticks, train.py's clock at the last tick that logged it) of one stats.jsonl; (no ticks, 0) if absent."""
    ticks: list[dict] = []
    total_sec = 0.0
    if not os.path.isfile(path):
        return ticks, total_sec
    with open(path) as f:
        for line in f:
            try:
                stats = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: the tick is lost, the rest is fine
            if not isinstance(stats, dict):
                continue
            tick = _tick(stats)
            if tick is not None:
                ticks.append(tick)
            timing = stats.get("Timing/total_sec")
            if isinstance(timing, dict) and isinstance(timing.get("mean"), (int, float)):
                total_sec = float(timing["mean"])
    return ticks, total_sec


def _tick(stats: dict) -> Optional[dict]:
    progress = stats.get("Progress/kimg")
    kimg = progress.get("mean") if isinstance(progress, dict) else None
    if not isinstance(kimg, (int, float)):
        return None
    tick = {"kimg": round(float(kimg), 3)}
    for short, key in DIAGNOSTIC_STATS.items():
        value = stats.get(key)
        if isinstance(value, dict) and value.get("num", 0) > 0 and value.get("mean") is not None:
            tick[short] = round(float(value["mean"]), 5)
    return tick


def attach(results: dict, outdir: str, log: Callable = print) -> int:
    """Refresh `diagnostics` (and a larger logged `train_seconds`) of every run whose directory is here;
    returns how many were refreshed."""
    refreshed = 0
    for key, run in results.get("runs", {}).items():
        local = os.path.join(outdir, run.get("local_dir", ""))
        ticks, seconds = read_run_logs([os.path.join(local, d) for d in run.get("run_dirs", [])])
        seconds = round(seconds, 1)
        changed = bool(ticks) and ticks != run.get("diagnostics")
        if changed:
            run["diagnostics"] = ticks
        if seconds > run.get("train_seconds", 0.0):
            run["train_seconds"] = seconds
            changed = True
        refreshed += changed
    if refreshed:
        log(f"diagnostics: refreshed {refreshed} run(s) from their stats.jsonl")
    return refreshed


def end_values(ticks: list[dict], tail: int = TAIL) -> dict[str, float]:
    """Mean of the last `tail` ticks per statistic, plus the D score gap and the CL loss of tick 1."""
    out: dict[str, float] = {}
    for short in list(DIAGNOSTIC_STATS) + ["score_gap"]:
        values = [_value(t, short) for t in ticks]
        values = [v for v in values if v is not None][-tail:]
        if values:
            out[short] = sum(values) / len(values)
    # the first whole tick: the line of tick 0 holds one step, taken on an empty queue (loss 0)
    first = next((t["cl_fake_D"] for t in ticks[1:] if "cl_fake_D" in t), None)
    if first is not None:
        out["cl_fake_D@first"] = first
    return out


def _value(tick: dict, short: str) -> Optional[float]:
    if short == "cl_gain":  # nats the head is above chance, on the loss without the forgetting term
        if "fake_chance" in tick and "cl_fake_D" in tick:
            return tick["fake_chance"] - (tick["cl_fake_D"] - tick.get("margin_nats", 0.0))
        return None
    if short == "score_gap":
        if "score_real" in tick and "score_fake" in tick:
            return tick["score_real"] - tick["score_fake"]
        return None
    return tick.get(short)


def method_summary(runs: dict, dataset: str, method: str) -> tuple[int, dict[str, bench_stats.Summary]]:
    """(runs with diagnostics, {column: summary over those runs}) of one method on one dataset."""
    ends = [end_values(r["diagnostics"]) for r in bench_stats.finished_runs(runs, dataset, method) if r.get("diagnostics")]
    names = {name for _, name, _ in COLUMNS}
    return len(ends), {name: bench_stats.summarize([e[name] for e in ends if name in e]) for name in names}


def series_over_seeds(runs: dict, dataset: str, method: str, short: str) -> list[tuple[float, bench_stats.Summary]]:
    """(kimg, summary over seeds) of one statistic, for a plot with a band."""
    by_kimg: dict[float, list[float]] = {}
    for run in bench_stats.finished_runs(runs, dataset, method):
        for tick in run.get("diagnostics", [])[1:]:  # tick 0 is a single step
            value = _value(tick, short)
            if value is not None:
                by_kimg.setdefault(round(tick["kimg"]), []).append(value)
    return [(kimg, bench_stats.summarize(values)) for kimg, values in sorted(by_kimg.items())]

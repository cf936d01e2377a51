"""Turn each step's output into results, and say what is wrong with them.

A parser takes the step's combined stdout/stderr and the suite's work directory and returns
(results, problem): `results` is JSON-ready, `problem` a one-line reason the step failed even
though its command exited 0 (a disagreeing op, a non-finite loss), or None.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from typing import Any, Callable, Optional

Parsed = tuple[Any, Optional[str]]


def json_lines(output: str) -> list[dict]:
    """Every line of `output` that is a JSON object (the benchmarks print one per measurement)."""
    records = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def parse_build(output: str, work_dir: str) -> Parsed:
    ops = [r for r in json_lines(output) if "build_s" in r]
    broken = [f"{r['op']}: {r.get('error') or _check_failure(r.get('self_check'))}" for r in ops if not r.get("usable")]
    if not ops:
        return ops, "the build probe printed no result"
    return ops, "; ".join(broken) or None


def _check_failure(check: Optional[dict]) -> str:
    return "no self-check ran (the plugin was not used)" if not check else f"self-check failed: {check.get('summary')}"


_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def parse_pytest(output: str, work_dir: str) -> Parsed:
    counts: dict[str, int] = {}
    summary = [line for line in output.splitlines() if _PYTEST_COUNT.search(line) and " in " in line]
    for count, kind in _PYTEST_COUNT.findall(summary[-1] if summary else ""):
        counts["errors" if kind.startswith("error") else kind] = int(count)
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in output.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    results = dict(counts=counts, failed=failed)
    if not counts.get("passed"):
        return results, "no test passed" + (f" ({', '.join(failed[:3])})" if failed else "")
    if failed or counts.get("failed") or counts.get("errors"):
        return results, f"{len(failed) or counts.get('failed', 0)} failed: {', '.join(failed[:3])}"
    return results, None


def parse_ops(output: str, work_dir: str) -> Parsed:
    ops = [r for r in json_lines(output) if "speedup_fused_vs_ref" in r]
    if not ops:
        return ops, "ops_bench printed no comparison"
    problems = [f"{r['op']} {r['dtype']}: fwd {r['fwd_error']:.1e} / grad {r['grad_error']:.1e} > {r['tolerance']:.0e}"
                for r in ops if not r["agrees"]]
    problems += [f"{r['op']}: the plugin was not used (reference vs reference)" for r in ops if not r["plugin_used"]]
    return ops, "; ".join(problems[:3]) or None


def parse_train(output: str, work_dir: str) -> Parsed:
    records = json_lines(output)
    configs = [r for r in records if "img_per_s" in r]
    ratios = [r for r in records if "ratio" in r]
    if not configs:
        return dict(configs=[], ratios=[]), "train_bench printed no configuration"
    fallbacks = [f"{r['variant']}: {r['compile_fallback']}" for r in configs if r.get("compile_fallback")]
    return dict(configs=configs, ratios=ratios), ("torch.compile fell back to eager: " + "; ".join(fallbacks)
                                                  if fallbacks else None)


def parse_metrics(output: str, work_dir: str) -> Parsed:
    cases = [r for r in json_lines(output) if "img_per_s" in r]
    return cases, None if cases else "metrics_bench printed no result"


def parse_training_run(output: str, work_dir: str) -> Parsed:
    """The short real training: every Loss/* statistic of every tick is finite."""
    runs = sorted(glob.glob(os.path.join(work_dir, "train64", "*", "stats.jsonl")))
    if not runs:
        return {}, "the training wrote no stats.jsonl"
    ticks = [json.loads(line) for line in open(runs[-1]) if line.strip()]
    losses = {key: [tick[key]["mean"] for tick in ticks if key in tick]
              for key in sorted({key for tick in ticks for key in tick if key.startswith("Loss/")})}
    nonfinite_losses = sorted(key for key, values in losses.items() if not all(math.isfinite(v) for v in values))
    nonfinite_grads = sum(value["mean"] * value["num"] for tick in ticks for key, value in tick.items()
                          if key.startswith("Debug/nonfinite_grad/"))
    last = ticks[-1] if ticks else {}
    results = dict(run_dir=os.path.dirname(runs[-1]), ticks=len(ticks),
                   kimg=last.get("Progress/kimg", {}).get("mean"),
                   sec_per_kimg=last.get("Timing/sec_per_kimg", {}).get("mean"),
                   peak_gpu_mem_gb=max((t.get("Resources/peak_gpu_mem_gb", {}).get("mean", 0) for t in ticks),
                                       default=None),
                   final_losses={key: values[-1] for key, values in losses.items() if values},
                   nonfinite_losses=nonfinite_losses, nonfinite_gradient_elements=nonfinite_grads,
                   snapshots=len(glob.glob(os.path.join(os.path.dirname(runs[-1]), "network-snapshot-*.pkl"))))
    if not losses:
        return results, "stats.jsonl holds no Loss/* statistic"
    if nonfinite_losses:
        return results, f"non-finite losses: {', '.join(nonfinite_losses)}"
    return results, None


PARSERS: dict[str, Callable[[str, str], Parsed]] = {
    "build": parse_build, "pytest": parse_pytest, "ops": parse_ops, "train": parse_train,
    "metrics": parse_metrics, "training_run": parse_training_run,
}

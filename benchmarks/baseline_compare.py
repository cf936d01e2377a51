"""train_bench.py --baseline-commit: the same configurations on an old commit and on this tree, alternating.

A temporary `git worktree` holds the old commit. Every round runs each configuration once on each
side, each run a fresh subprocess of that side's own benchmarks/train_bench.py (so each side
measures its own code with its own harness); the order alternates between rounds (old-new, then
new-old) so that a drift in machine load hits both sides alike. Ratios new/old of img/s are
computed within each round; the summary gives every round's ratio and their median.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def old_worktree(commit: str) -> Iterator[str]:
    """A detached worktree of `commit` in a temporary folder, removed afterwards."""
    parent = tempfile.mkdtemp(prefix="train-bench-baseline-")
    path = os.path.join(parent, "tree")
    result = subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, commit],
                            capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        raise SystemExit(f"train_bench.py: --baseline-commit={commit}: git worktree add failed: "
                         f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'unknown error'}; "
                         f"pass a commit of this repository")
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


def run_side(tree: str, config_args: list[str]) -> dict:
    """One configuration in a subprocess of `tree`'s train_bench.py; its JSON result line."""
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "train_bench.py"), *config_args]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"train_bench.py: the run in {tree} failed: {tail}")
    for line in proc.stdout.splitlines():
        if line.startswith("{") and '"img_per_s"' in line:
            return json.loads(line)
    raise SystemExit(f"train_bench.py: the run in {tree} printed no result line")


def compare(commit: str, configs: list[tuple[str, list[str]]], rounds: int) -> list[dict]:
    """Alternate old/new for every (label, args) configuration; return one row per round and config."""
    rows = []
    with old_worktree(commit) as old_tree:
        for rnd in range(rounds):
            for label, args in configs:
                order = [("old", old_tree), ("new", ROOT)]
                if rnd % 2:
                    order.reverse()
                got = {side: run_side(tree, args) for side, tree in order}
                row = dict(round=rnd, config=label, baseline_commit=commit, order="-".join(s for s, _ in order),
                           old_img_per_s=got["old"]["img_per_s"], new_img_per_s=got["new"]["img_per_s"],
                           speedup=got["new"]["img_per_s"] / got["old"]["img_per_s"],
                           old_phase_ms=got["old"]["phase_ms_per_step"], new_phase_ms=got["new"]["phase_ms_per_step"])
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def print_summary(rows: list[dict]) -> None:
    print("\nimg/s, old commit vs this tree, per round (alternating order):")
    labels = list(dict.fromkeys(r["config"] for r in rows))
    for label in labels:
        mine = [r for r in rows if r["config"] == label]
        for r in mine:
            print(f"  {label:<28} round {r['round']} ({r['order']}): old {r['old_img_per_s']:.1f}  "
                  f"new {r['new_img_per_s']:.1f}  new/old {r['speedup']:.3f}")
        print(f"  {label:<28} median new/old {statistics.median(r['speedup'] for r in mine):.3f}")
    for line in method_cost_lines(rows):
        print(line)


def method_cost_lines(rows: list[dict]) -> list[str]:
    """Per round and side: time per image of fakeclr / ada (same preset, ops and variant)."""
    table = {}
    for r in rows:
        preset, method, *rest = r["config"].split("/")
        table.setdefault((r["round"], preset, *rest), {})[method] = r
    lines = []
    for key, by_method in table.items():
        if "fakeclr" in by_method and "ada" in by_method:
            f, a = by_method["fakeclr"], by_method["ada"]
            lines.append(f"  round {key[0]} {'/'.join(key[1:])}: time fakeclr/ada  old "
                         f"{a['old_img_per_s'] / f['old_img_per_s']:.3f}  new {a['new_img_per_s'] / f['new_img_per_s']:.3f}")
    return lines

"""Paired differences between two methods of recorded benchmark runs: the report's pair table, for any pair.

The benchmark report pairs only its key pair (cpu-bench-v2: fakeclr − adalinear). This prints the same table
(Δ = first − second on the same training seed; final and best FID/KID, final − best, the FID at every kimg
both runs of a seed were scored at, the latent-continuity numbers) for any two methods, from one or several
results files; runs kept in separate files (a variant trained on a later commit, say) pair with the main ones.

Examples:
    python scripts/bench_pairs.py --results=examples/cpu-bench-v2/results.json --pair=ada,adalinear
    python scripts/bench_pairs.py --results=examples/cpu-bench-v2/results.json \
        --results=examples/cpu-bench-v2-adaptive/results.json --pair=fakeclr-adaptive,ada
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.bench_pairs`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import os

import click

from dnnlib import cli_errors
from scripts.compare import bench_report, bench_results
from scripts.compare.errors import HarnessError
from scripts.compare.state import read_results_json


def merged_runs(paths: list[str]) -> dict:
    """The bench runs of every file; a run recorded differently in two files is refused (which one counts?)."""
    runs: dict = {}
    for path in paths:
        results = read_results_json(path, bench_results.RESULTS_CONTAINERS, fix=bench_results.RESULTS_FIX)
        for key, run in bench_results.runs_of(results, "bench").items():
            if key in runs and runs[key] != run:
                raise HarnessError(f"{path}: run {key} is also in an earlier --results file, recorded differently; "
                                   f"give each run's file once")
            runs[key] = run
    return runs


def parse_pair(text: str) -> tuple[str, str]:
    names = [name.strip() for name in text.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise HarnessError(f"--pair={text}: give two different methods, first,second (Δ = first − second)")
    return names[0], names[1]


def pair_tables(runs: dict, pairs: list[tuple[str, str]], along_curve: bool = True) -> list[str]:
    datasets = sorted({key.split("/")[0] for key in runs})
    methods = {dataset: bench_report.methods_in({}, runs, dataset) for dataset in datasets}
    lines: list[str] = []
    for first, second in pairs:
        table = bench_report.pair_lines(runs, datasets, methods, (first, second), along_curve=along_curve)
        if not table:
            raise HarnessError(f"--pair={first},{second}: no dataset has recorded runs of both; the files hold "
                               f"{', '.join(bench_report.methods_in({}, runs))}")
        lines += table
    return lines


@click.command()
@click.option("--results", "paths", multiple=True, required=True, metavar="JSON",
              help="A benchmark results file (repeat for several)")
@click.option("--pair", "pairs", multiple=True, required=True, metavar="FIRST,SECOND",
              help="Two methods; Δ = FIRST − SECOND by seed (repeat for several pairs)")
@click.option("--along-curve/--final-only", default=True, show_default=True,
              help="Also pair final − best FID and the FID at every kimg both runs of a seed were scored at")
def main(paths: tuple[str, ...], pairs: tuple[str, ...], along_curve: bool) -> None:
    """Print the paired-difference table of each --pair (markdown)."""
    with cli_errors.one_line_errors(HarnessError):
        parsed = [parse_pair(text) for text in pairs]
        runs = merged_runs([os.path.expanduser(path) for path in paths])
        print("\n".join(pair_tables(runs, parsed, along_curve)))


if __name__ == "__main__":
    main()

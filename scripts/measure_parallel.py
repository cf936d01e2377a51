"""Two runs at once with one thread each, or one run at a time with two threads: which finishes the set sooner?

Runs the real harness (scripts/compare_methods.py --preset=cpu-bench) twice on the same two short
trainings (ada, seeds 0 and 1, --kimg each), scored with the cheap `colour` evaluator so that the
wall time is training time: once with --parallel=2 --threads=1, once with --parallel=1 --threads=2.
The order of the two modes alternates over --repeats so that a change in the machine's load does not
favour one of them. The load average (1/5/15 min) before and after each measurement is recorded:
on a shared machine it says how much the numbers can be trusted.

Example:
    python scripts/measure_parallel.py --kimg=0.5 --out=examples/cpu-bench/parallel.json
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.measure_parallel`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import click  # noqa: E402

from dnnlib.util import atomic_write  # noqa: E402

MODES = {"side-by-side": ("--parallel=2", "--threads=1"), "one-at-a-time": ("--parallel=1", "--threads=2")}


def measure(mode: str, data: str, kimg: float, workdir: str) -> dict:
    outdir = os.path.join(workdir, mode)
    command = [sys.executable, os.path.join(REPO, "scripts", "compare_methods.py"), "--preset=cpu-bench", f"--data={data}",
               f"--outdir={outdir}", f"--results={os.path.join(outdir, 'results.json')}", "--methods=ada", "--seeds=0,1",
               f"--kimg={kimg}", f"--tick={kimg}", "--snap=1", "--evaluator=colour", "--num-gen=16", *MODES[mode]]
    before = list(os.getloadavg())
    began = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, DNNLIB_CACHE_DIR=os.path.join(workdir, "cache")))
    seconds = time.time() - began
    if result.returncode != 0:
        raise click.ClickException(f"{mode}: the harness failed: {(result.stdout + result.stderr).strip()[-500:]}")
    return dict(mode=mode, seconds=round(seconds, 1), load_before=before, load_after=list(os.getloadavg()))


@click.command()
@click.option("--data", default=os.path.join(REPO, "datasets", "emoji-smileys"), show_default=True, help="Dataset")
@click.option("--kimg", type=float, default=0.5, show_default=True, help="Training length of each of the two runs")
@click.option("--repeats", type=int, default=1, show_default=True, help="Measurements per mode (order alternates)")
@click.option("--out", required=True, metavar="JSON", help="Where to write the measurement")
def main(data: str, kimg: float, repeats: int, out: str) -> None:
    """Time two short trainings side by side (1 thread each) and one after the other (2 threads each)."""
    if kimg <= 0 or repeats < 1:
        raise click.ClickException("--kimg must be positive and --repeats at least 1")
    measurements = []
    with tempfile.TemporaryDirectory(prefix="measure-parallel-") as workdir:
        for repeat in range(repeats):
            order = list(MODES) if repeat % 2 == 0 else list(reversed(MODES))
            for mode in order:
                with tempfile.TemporaryDirectory(dir=workdir) as run_dir:
                    measurements.append(dict(measure(mode, data, kimg, run_dir), repeat=repeat))
                print(json.dumps(measurements[-1]), flush=True)
    totals = {mode: sum(m["seconds"] for m in measurements if m["mode"] == mode) / repeats for mode in MODES}
    summary = dict(kimg_per_run=kimg, runs=2, cpu_count=os.cpu_count(), measurements=measurements,
                   mean_seconds=totals, faster=min(totals, key=totals.get),
                   speedup_side_by_side=totals["one-at-a-time"] / totals["side-by-side"])
    with atomic_write(out, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

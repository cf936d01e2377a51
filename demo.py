"""The embedded demo (README set-up command 1): dataset -> FakeCLR training -> samples -> KID/FID.

Runs on a CPU in a few minutes with the `tiny` preset, using only what the repo ships
(datasets/emoji-smileys, 169 real 64 px emoji) and the offline Inception weights that
`python scripts/fetch_weights.py` fetched (README command 1 runs it). Each step is the real command-line tool, and the
exact command is printed so you can rerun or scale up any step:

    1. dataset_tool.py   emoji folder -> 32 px training zip
    2. train.py          --cfg=tiny --method=fakeclr
    3. generate.py       a sample grid from the final snapshot
    4. calc_metrics.py   KID / FID of the final snapshot against the training set
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import click

from training.method_registry import method_class, method_names
from training.run_dir import newest_snapshot

REPO = os.path.dirname(os.path.abspath(__file__))
EMBEDDED = os.path.join(REPO, "datasets", "emoji-smileys")


def run(args: list[str]) -> None:
    command = [sys.executable, *args]
    print("\n$ " + " ".join(["python", *args]), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise click.ClickException(f"step failed (exit code {result.returncode}): python {' '.join(args)}")


def missing_detector() -> str | None:
    """Why the metrics step cannot run (metrics.detectors' own message), or None when Inception weights are found."""
    from metrics.detectors import inception_source

    try:
        inception_source()
    except (FileNotFoundError, OSError, ValueError) as err:
        return str(err)
    return None


RESOLUTIONS = (16, 32, 64)  # powers of two up to the embedded images' 64 px


def positive_kimg(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not value > 0:
        raise click.BadParameter(f"{value:g}: give a positive number of kimg, e.g. 6 or 0.5")
    return value


@click.command()
@click.option("--outdir", default="runs/demo", show_default=True, help="Where the dataset, run and samples go")
@click.option("--method", default="fakeclr", show_default=True,
              type=click.Choice([name for name in method_names() if not method_class(name).needs_labels]),
              help="Training method (the demo's data has no labels)")
@click.option("--kimg", default=6.0, show_default=True, type=float, callback=positive_kimg,
              help="Training length in thousands of real images (fractions allowed)")
@click.option("--resolution", default="32", show_default=True, type=click.Choice([str(r) for r in RESOLUTIONS]),
              help="Training resolution in pixels")
@click.option("--metrics", default="kid500_full,fid500_full", show_default=True,
              help="Metrics of the final snapshot ('none' to skip)")
def main(outdir: str, method: str, kimg: float, resolution: str, metrics: str) -> None:
    """Train a small GAN on the embedded emoji dataset and evaluate it."""
    resolution = int(resolution)
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(outdir, f"emoji-smileys-{resolution}.zip")
    if not os.path.exists(data):
        run(["dataset_tool.py", f"--source={EMBEDDED}", f"--dest={data}", f"--resolution={resolution}x{resolution}"])

    runs_dir = os.path.join(outdir, "runs")
    before = set(glob.glob(os.path.join(runs_dir, "*")))
    run(["train.py", f"--outdir={runs_dir}", f"--data={data}", "--cfg=tiny", f"--method={method}", "--mirror=True",
         f"--kimg={kimg:g}", "--snap=10", "--metrics=none", "--workers=1"])
    run_dir = sorted(set(glob.glob(os.path.join(runs_dir, "*"))) - before)[-1]
    snapshot = newest_snapshot(run_dir)  # in training order (names may carry decimals)

    samples = os.path.join(outdir, "samples")
    run(["generate.py", f"--network={snapshot}", "--seeds=0-63", "--grid", f"--outdir={samples}"])

    if metrics.strip().lower() != "none":
        missing = missing_detector()
        if missing is not None:
            print(f"\nSkipping metrics. {missing}")
        else:
            run(["calc_metrics.py", f"--network={snapshot}", f"--metrics={metrics}", f"--data={data}", "--mirror=True"])
            print_metric_summary(run_dir)

    print(f"\nDone. Run directory: {run_dir}\nSamples: {samples}")


def print_metric_summary(run_dir: str) -> None:
    for path in sorted(glob.glob(os.path.join(run_dir, "metric-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            last = json.loads(f.read().splitlines()[-1])
        print(", ".join(f"{k} = {v:.4g}" for k, v in last["results"].items()))  # keys name the metric


if __name__ == "__main__":
    main()

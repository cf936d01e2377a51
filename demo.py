"""The embedded demo (README set-up command 1): dataset -> ADA fine-tuning -> samples -> KID/FID.

Runs on a CPU in about 9 minutes (2 idle cores, measured; see the README) with the `tiny` preset, using
only what the repo ships (datasets/emoji-smileys, 169 real 64 px emoji; a small starting network trained on
the repo's other set, datasets/emoji-food) and the offline Inception weights that
`python scripts/fetch_weights.py` fetched (README command 1 runs it). Each step is the real command-line
tool, and the exact command is printed so you can rerun or scale up any step:

    1. dataset_tool.py   emoji folder -> 32 px training zip
    2. train.py          --cfg=tiny --method=ada --resume=<the food network> (few-shot users fine-tune)
    3. generate.py       a sample grid from the final snapshot
    4. calc_metrics.py   KID / FID of the final snapshot against the training set

Why a starting network: from scratch, the tiny generator draws coloured blobs for its first ~30 kimg and
faces from ~40-50 kimg; starting from shapes and colours learnt on food emoji (never on the smileys), it
draws faces by 24 kimg. How it was made: datasets/pretrained/README.md. `--resume=none` trains from scratch
instead; `--method=fakeclr` trains the headline method (about 1.3x slower per kimg).
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
PRETRAINED = os.path.join(REPO, "datasets", "pretrained", "emoji-food-tiny-32.pkl")
PRETRAINED_RESOLUTION = 32


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
@click.option("--method", default="ada", show_default=True,
              type=click.Choice([name for name in method_names() if not method_class(name).needs_labels]),
              help="Training method (the demo's data has no labels)")
@click.option("--kimg", default=24.0, show_default=True, type=float, callback=positive_kimg,
              help="Training length in thousands of real images (fractions allowed)")
@click.option("--resolution", default="32", show_default=True, type=click.Choice([str(r) for r in RESOLUTIONS]),
              help="Training resolution in pixels")
@click.option("--resume", default="pretrained", show_default=True,
              help="Starting network: 'pretrained' (the shipped food-emoji network, 32 px only), 'none', or a pickle")
@click.option("--metrics", default="kid500_full,fid500_full", show_default=True,
              help="Metrics of the final snapshot ('none' to skip)")
def main(outdir: str, method: str, kimg: float, resolution: str, resume: str, metrics: str) -> None:
    """Train a small GAN on the embedded emoji dataset and evaluate it."""
    resolution = int(resolution)
    start = starting_network(resume, resolution)
    outdir = os.path.abspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(outdir, f"emoji-smileys-{resolution}.zip")
    if not os.path.exists(data):
        run(["dataset_tool.py", f"--source={EMBEDDED}", f"--dest={data}", f"--resolution={resolution}x{resolution}"])

    runs_dir = os.path.join(outdir, "runs")
    before = set(glob.glob(os.path.join(runs_dir, "*")))
    run(["train.py", f"--outdir={runs_dir}", f"--data={data}", "--cfg=tiny", f"--method={method}", "--mirror=True",
         f"--kimg={kimg:g}", "--snap=10", "--metrics=none", "--workers=1", *start, *process_args()])
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


def starting_network(resume: str, resolution: int) -> list[str]:
    """train.py's --resume for the demo's --resume: the shipped network only fits its own resolution."""
    if resume == "none":
        return []
    if resume != "pretrained":
        return [f"--resume={resume}"]
    if resolution != PRETRAINED_RESOLUTION:
        print(f"Note: the shipped starting network is {PRETRAINED_RESOLUTION} px; training {resolution} px from scratch")
        return []
    if not os.path.isfile(PRETRAINED):
        raise click.ClickException(f"--resume=pretrained: {PRETRAINED} is missing; restore it from git "
                                   f"(git checkout -- datasets/pretrained) or pass --resume=none")
    return [f"--resume={PRETRAINED}"]


def process_args() -> list[str]:
    """Two single-thread gloo processes (batch 4 each) on a machine with two or more cores: the tiny networks
    are too small for one process's second thread to pay (measured for the demo: 14-16 s/kimg for ada against
    19 s/kimg on one thread; docs/results.md, "A CPU preset that learns"). The run differs from a one-process run
    in its random draws (each process draws its own latents), not in its recipe: the same global batch of 8."""
    return ["--gpus=2", "--cpu-procs=True"] if (os.cpu_count() or 1) >= 2 else []


def print_metric_summary(run_dir: str) -> None:
    for path in sorted(glob.glob(os.path.join(run_dir, "metric-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            last = json.loads(f.read().splitlines()[-1])
        print(", ".join(f"{k} = {v:.4g}" for k, v in last["results"].items()))  # keys name the metric


if __name__ == "__main__":
    main()

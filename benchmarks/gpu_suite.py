"""The GPU suite: every GPU figure of docs/performance.md from one command, within a time budget.

    python benchmarks/gpu_suite.py --budget-s=480 --out=gpu_report    # on a GPU machine after the README set-up
    python benchmarks/gpu_suite.py --dry-run                           # anywhere: the plan, with estimates
    python benchmarks/gpu_suite.py --steps=build_plugins,ops_fp16 --budget-s=200

In priority order (benchmarks/suite/plan.py): build the CUDA plugins and self-check them, run the
`cuda`-marked tests, compare fused and reference ops in fp32 and fp16, time paper256 training at
batch 64 (ADA and FakeCLR, fused and reference ops, the speed switches), the auto config at 256 px,
Inception throughput at batch 256, a short real 64 px FakeCLR training, torch.compile. A step whose
estimate does not fit in what is left of the budget is skipped and named. Writes <out>/gpu_report.json,
<out>/gpu_report.md (tables for docs/performance.md) after every step, and <out>/logs/<step>.log;
builds, datasets and training runs go to --work-dir (default <out>/work; large, need not be kept).
See docs/performance.md.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.suite import plan as suite_plan  # noqa: E402
from benchmarks.suite import report as suite_report  # noqa: E402
from benchmarks.suite.runner import SuiteRunner  # noqa: E402


@click.command()
@click.option("--budget-s", "budget_s", type=click.FloatRange(min=1), default=480, show_default=True,
              help="Wall-clock seconds for all steps together")
@click.option("--out", "out_dir", default="gpu_report", show_default=True,
              help="Output directory: gpu_report.json, gpu_report.md, logs/")
@click.option("--work-dir", default=None, help="Plugin builds, benchmark datasets, training runs [default: <out>/work]")
@click.option("--steps", "step_names", default=None, help="Comma-separated steps to run, in this order [default: all]")
@click.option("--skip", default=None, help="Comma-separated steps to leave out")
@click.option("--dry-run", is_flag=True, help="Print the plan with estimated times and exit")
def main(budget_s: float, out_dir: str, work_dir: str | None, step_names: str | None, skip: str | None,
         dry_run: bool) -> None:
    """Build, test and measure the GPU path within a time budget; write a report."""
    try:
        steps = suite_plan.select_steps(step_names, skip)
    except suite_plan.PlanError as error:
        raise click.ClickException(f"--steps/--skip: {error}") from None
    work_dir = work_dir or os.path.join(out_dir, "work")
    if dry_run:
        print(suite_plan.format_plan(suite_plan.plan(steps, budget_s), budget_s, work_dir))
        return
    import torch

    if not torch.cuda.is_available():
        raise click.ClickException("gpu_suite: no CUDA GPU is visible to torch; run it on a GPU machine "
                                   "(--dry-run shows the plan anywhere)")
    out_dir, work_dir = os.path.abspath(out_dir), os.path.abspath(work_dir)
    command = "python benchmarks/gpu_suite.py " + shlex.join(sys.argv[1:])
    started_at, environment = suite_report.now_utc(), suite_report.collect_environment()

    def write(outcomes) -> None:
        report = suite_report.build_report(environment, budget_s, started_at, outcomes, command)
        suite_report.write_report(report, out_dir)
        last = outcomes[-1]
        print(f"[gpu_suite] {last.name}: {last.status} ({last.seconds:.0f} s)"
              + (f" -- {last.reason}" if last.reason else ""), flush=True)

    suite_report.write_report(suite_report.build_report(environment, budget_s, started_at, [], command), out_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the runner, which kills the step
    runner = SuiteRunner(out_dir=out_dir, work_dir=work_dir, budget_s=budget_s, on_update=write,
                         env=step_environment(work_dir))
    outcomes = runner.run(steps)
    print(f"[gpu_suite] report: {os.path.join(out_dir, 'gpu_report.md')} and gpu_report.json")
    failed = [o.name for o in outcomes if o.status in ("failed", "timed_out")]
    if failed:
        raise click.ClickException(f"gpu_suite: steps failed: {', '.join(failed)}; see {out_dir}/logs/")


def step_environment(work_dir: str) -> dict[str, str]:
    """This process's environment, with one plugin build for every step (the tests isolate
    DNNLIB_CACHE_DIR, so they would rebuild otherwise) and no FAKECLR_OPS (each step chooses its
    ops; a leftover FAKECLR_OPS=ref would make every "fused" figure the reference's)."""
    env = dict(os.environ)
    env.pop("FAKECLR_OPS", None)
    env.setdefault("FAKECLR_PLUGIN_DIR", os.path.join(work_dir, "plugins"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return env


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

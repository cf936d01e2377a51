"""Where one CPU training step goes: FLOPs, dispatched ops by call site, the torch.profiler table, pass times.

Sets up the real Trainer exactly as benchmarks/train_bench.py does (train.py's option resolution, `tiny` by
default), warms up, then examines `--steps` calls of `Trainer.train_step()`:

    OMP_NUM_THREADS=1 python benchmarks/step_profile.py --methods=ada,fakeclr --report=flops,ops,passes
    OMP_NUM_THREADS=1 python benchmarks/step_profile.py --methods=ada --report=profile --top=40

Reports (docs/performance.md, "A cheaper CPU step"):
  flops    multiply-adds x 2 of every op torch's flop registry knows (convolutions and their gradients, matmuls),
           per step and per op, plus one G and one D forward at the training batch; counted with a dispatch
           mode, because FlopCounterMode's module hooks break the autograd.grad of R1 / path length
  ops      dispatched aten ops per step, by the repository file and line that issued them
  profile  torch.profiler's self-CPU table (its own overhead inflates small ops)
  passes   CPU time (process time: waiting for a loaded core is not counted) of one no-grad G forward and one
           no-grad D forward with and without the augmentation pipe: what each extra contrastive pass costs
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import sys
import time
from typing import Any, Callable

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402

REPORTS = ("flops", "ops", "profile", "passes")


class FlopCount(TorchDispatchMode):
    """Sums torch's registered FLOP formulas over every op dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.by_op: collections.Counter = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.by_op[str(func._overloadpacket)] += formula(*args, **kwargs, out_val=out)
        return out


class OpCensus(TorchDispatchMode):
    """Counts dispatched ops by the innermost calling frame inside `root` ('file:line function')."""

    def __init__(self, root: str = ROOT):
        super().__init__()
        self.root = root + os.sep
        self.by_site: collections.Counter = collections.Counter()

    def by_file(self) -> collections.Counter:
        files: collections.Counter = collections.Counter()
        for site, count in self.by_site.items():
            files[site.split(":")[0]] += count
        return files

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_site[self._site()] += 1
        return func(*args, **(kwargs or {}))

    def _site(self) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            path = frame.f_code.co_filename
            if path.startswith(self.root) and os.path.basename(path) != "step_profile.py":
                return f"{os.path.relpath(path, self.root)}:{frame.f_lineno} {frame.f_code.co_name}"
            frame = frame.f_back
        return "(outside the repository)"


def cpu_ms(fn: Callable[[], Any], repeats: int = 10, rounds: int = 5) -> float:
    """Second-best of `rounds` averages of process time per call (robust to a loaded machine)."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeats):
            fn()
        times.append((time.process_time() - start) / repeats * 1000)
    return sorted(times)[min(1, rounds - 1)]


def make_trainer(method: str, preset: str, cache_dir: str) -> Any:
    from benchmarks.train_bench import PRESET_RES, build_dataset, resolve_train_options
    from torch_utils import training_stats
    from training.training_loop import Trainer

    data = build_dataset(PRESET_RES[preset], cache_dir)
    opts = resolve_train_options([f"--outdir={os.path.join(cache_dir, 'runs')}", f"--data={data}", f"--cfg={preset}",
                                  f"--method={method}", "--metrics=none", "--workers=1", "--kimg=1000"])
    training_stats.reset_all()
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.setup()
    return trainer


def run_steps(trainer: Any, steps: int) -> None:
    for _ in range(steps):
        trainer.train_step()


def report_flops(trainer: Any, steps: int) -> None:
    with FlopCount() as count:
        run_steps(trainer, steps)
    per_op = ", ".join(f"{op} {n / steps / 1e9:.3f}" for op, n in count.by_op.most_common())
    print(f"  GFLOP per step {count.total / steps / 1e9:.3f} ({per_op})")
    z, c, img = forward_inputs(trainer)
    with torch.no_grad(), FlopCount() as g_count:
        trainer.G(z, c)
    with torch.no_grad(), FlopCount() as d_count:
        trainer.D(img, c)
    print(f"  one G forward {g_count.total / 1e9:.4f} GFLOP, one D forward {d_count.total / 1e9:.4f} GFLOP "
          f"(batch {z.shape[0]})")


def forward_inputs(trainer: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, labels and images of one training batch (random; speed does not depend on content)."""
    batch, G = trainer.o.batch_gpu, trainer.G
    return (torch.randn(batch, G.z_dim), torch.zeros(batch, G.c_dim),
            torch.randn(batch, G.img_channels, G.img_resolution, G.img_resolution))


def report_ops(trainer: Any, steps: int, top: int) -> None:
    with OpCensus() as census:
        run_steps(trainer, steps)
    print(f"  dispatched ops per step {sum(census.by_site.values()) / steps:.0f}; by file:")
    for name, count in census.by_file().most_common(top):
        print(f"    {count / steps:8.0f}  {name}")
    print("  by call site:")
    for name, count in census.by_site.most_common(top):
        print(f"    {count / steps:8.0f}  {name}")


def report_profile(trainer: Any, steps: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run_steps(trainer, steps)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top))


def report_passes(trainer: Any) -> None:
    loss = trainer.loss
    z, c, img = forward_inputs(trainer)
    D_key = getattr(trainer.method, "D_ema", trainer.D)  # the contrastive key network where the method has one
    with torch.no_grad():
        g_ms = cpu_ms(lambda: loss.run_G(z, c, update_emas=False))
        d_aug_ms = cpu_ms(lambda: loss.run_D(img, c, D=D_key))
        d_ms = cpu_ms(lambda: D_key(img, c, return_features=True))
    print(f"  no-grad CPU ms: G forward {g_ms:.2f}, D forward with augmentation {d_aug_ms:.2f}, without {d_ms:.2f}")


@click.command()
@click.option("--methods", default="ada,fakeclr", show_default=True, help="Comma-separated training methods")
@click.option("--preset", default="tiny", show_default=True, help="train.py --cfg preset")
@click.option("--report", "reports", default="flops,ops,passes", show_default=True,
              help=f"Comma-separated: {', '.join(REPORTS)}")
@click.option("--steps", type=click.IntRange(min=1), default=16, show_default=True, help="Examined steps")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed steps first")
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True, help="Rows per table")
@click.option("--cache-dir", default="/tmp/fakeclr-train-bench", show_default=True)
def main(methods: str, preset: str, reports: str, steps: int, warmup: int, top: int, cache_dir: str) -> None:
    """Profile the CPU training step of each method (docs/performance.md)."""
    chosen = [r for r in reports.split(",") if r]
    unknown = sorted(set(chosen) - set(REPORTS))
    if unknown:
        raise click.BadParameter(f"unknown report(s) {', '.join(unknown)}; choose from {', '.join(REPORTS)}",
                                 param_hint="--report")
    for method in [m for m in methods.split(",") if m]:
        trainer = make_trainer(method, preset, cache_dir)
        run_steps(trainer, warmup)
        print(f"{preset}/{method}: {steps} steps after {warmup} warm-up steps, {torch.get_num_threads()} thread(s)")
        if "flops" in chosen:
            report_flops(trainer, steps)
        if "ops" in chosen:
            report_ops(trainer, steps, top)
        if "profile" in chosen:
            report_profile(trainer, steps, top)
        if "passes" in chosen:
            report_passes(trainer)


if __name__ == "__main__":
    main()

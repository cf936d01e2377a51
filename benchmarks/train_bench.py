"""Training speed: img/s, sec/kimg, peak GPU memory and per-phase times for a grid of configurations.

One process; each configuration builds the real training options (train.py's resolve_options, so
every preset / method / switch means exactly what it means for train.py), sets up the real
`training.training_loop.Trainer`, warms up, then times `--steps` calls of `Trainer.train_step()`.
Output: one JSON line per configuration, a table, and ratios computed within the run
(method / ada, variant / plain, fused / ref). See docs/performance.md.

    python benchmarks/train_bench.py                                  # CPU default (~1-2 min)
    python benchmarks/train_bench.py --presets=paper256 --methods=ada,fakeclr --ops=cuda,ref \\
        --variants=plain,channels_last,bf16,compile,fused_adam --steps=32   # on a GPU

Presets: tiny (32 px, emoji-smileys via dataset_tool.py), paper256 (256 px) and stylegan2 (512 px),
the latter two on an upscaled copy of the embedded emoji images (speed does not depend on content).
Variants (comma-separated, '+' combines): plain, fp32, nhwc, bf16, channels_last, compile, fused_adam,
nobench, tf32, e.g. 'bf16+channels_last'. Ops: auto (the plugin on CUDA, reference on CPU), cuda
(FAKECLR_OPS=cuda), ref (FAKECLR_OPS=ref); switched at run time, the plugins are built once.

Memory: RSS (CPU) after the warm-up and after the timed steps, the process's peak RSS so far, and on
CUDA the peak allocated GPU memory of the warm-up and of the timed steps
(one process runs every configuration, so compare the growth `rss_growth_gb` between configurations).
`--train-args` adds train.py options to every configuration, e.g. `--train-args=--cl_query_view=independent`.

Per-phase times: on the CPU the loop's own phase timers (the CPU is synchronous); on CUDA a
separate pass of the same length with a device synchronisation around each phase (the throughput
pass runs without it). 'augment' and 'contrastive' are time spent inside the phases (nested:
'contrastive' includes the augmentations of its own D passes).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PRESET_RES = {"tiny": 32, "paper256": 256, "stylegan2": 512, "paper512": 512, "auto": 256}
VARIANT_FLAGS = {
    "plain": [], "fp32": ["--fp32=True"], "nhwc": ["--nhwc=True"], "bf16": ["--bf16=True"],
    "channels_last": ["--channels-last=True"], "compile": ["--compile=True"], "fused_adam": ["--fused-adam=True"],
    "nobench": ["--nobench=True"], "tf32": ["--allow-tf32=True"],
}
PHASE_NAMES = ("Gmain", "Greg", "Dmain", "Dreg", "Gboth", "Dboth")


def build_dataset(resolution: int, cache_dir: str) -> str:
    """The embedded emoji images as a <resolution> px zip (built once with dataset_tool.py)."""
    path = os.path.join(cache_dir, f"emoji{resolution}.zip")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "dataset_tool.py"),
                        f"--source={os.path.join(ROOT, 'datasets', 'emoji-smileys')}", f"--dest={path}",
                        f"--resolution={resolution}x{resolution}"], check=True, stdout=subprocess.DEVNULL)
    return path


def resolve_train_options(args: list[str]) -> dict:
    """train.py's own parsing and resolve_options for a command line (nothing is created)."""
    import train

    ctx = train.main.make_context("train.py", list(args))
    params = dict(ctx.params)
    params.pop("dry_run", None)
    opts, _ = train.resolve_options(params)
    opts.run_dir = None  # no grids, snapshots or logs
    return opts


def variant_flags(variant: str) -> list[str]:
    flags = []
    for part in variant.split("+"):
        if part not in VARIANT_FLAGS:
            raise click.BadParameter(f"unknown variant {part!r}; choose from {', '.join(VARIANT_FLAGS)}")
        flags += VARIANT_FLAGS[part]
    return flags


@contextlib.contextmanager
def ops_mode(mode: str):
    """Force the ops implementation (plugin_dispatch reads its environment variable at every call)."""
    from torch_utils.ops.plugin_dispatch import ENV_VAR

    previous = os.environ.get(ENV_VAR)
    if mode == "auto":
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = mode
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous


class Timers:
    """Wraps the trainer's phases, augmentation pipe and the method with (optionally synced) timers."""

    def __init__(self, trainer: Any, sync: Callable[[], None]):
        self.seconds: dict[str, float] = {}
        self.sync = sync
        trainer.run_phase = self._wrap(trainer.run_phase, lambda args: args[0].name)
        if trainer.augment_pipe is not None:
            trainer.augment_pipe.forward = self._wrap(trainer.augment_pipe.forward, lambda args: "augment")
        if trainer.method is not None:
            for name in ("loss_terms", "end_phase", "begin_iteration"):
                setattr(trainer.method, name, self._wrap(getattr(trainer.method, name), lambda args: "contrastive"))

    def _wrap(self, fn: Callable, key_of: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                key = key_of(args)
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return wrapped


def rss_gb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2 ** 30


def peak_rss_gb() -> float:
    """The process's peak resident set size so far (ru_maxrss is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def bench_one(preset: str, method: str, ops: str, variant: str, steps: int, warmup: int, batch: Optional[int],
              cache_dir: str, device_name: str, breakdown: bool = True, train_args: tuple[str, ...] = ()) -> dict:
    import torch

    from torch_utils import training_stats
    from training.training_loop import Trainer

    data = build_dataset(PRESET_RES[preset], cache_dir)
    args = [f"--outdir={os.path.join(cache_dir, 'runs')}", f"--data={data}", f"--cfg={preset}", f"--method={method}",
            "--metrics=none", "--workers=1", "--kimg=1000", *variant_flags(variant), *train_args]
    if batch is not None:
        args.append(f"--batch={batch}")
    opts = resolve_train_options(args)
    device = torch.device(device_name)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    training_stats.reset_all()
    with ops_mode(ops):
        trainer = Trainer(opts, rank=0, device=device, abort_fn=None)
        with contextlib.redirect_stdout(io.StringIO()):  # its "Training for 1000 kimg..." is no bench's line
            trainer.setup()
        for _ in range(warmup):
            trainer.train_step()
        rss_warm = rss_gb()
        peak_gb_warm = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
        timers = None if cuda else Timers(trainer, sync)
        for name in trainer.phase_timers:
            trainer.phase_timers[name] = 0.0
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        sync()
        seconds = time.perf_counter() - start
        rss_steps = rss_gb()
        peak_gb = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
        if cuda and breakdown:  # per-phase breakdown in a second pass with a sync around every timed call
            timers = Timers(trainer, sync)
            for _ in range(steps):
                trainer.train_step()
        breakdown = dict(timers.seconds) if timers is not None else {}

    images = steps * opts.batch_size
    phases = {name: breakdown.get(name, 0.0) / steps * 1000 for name in PHASE_NAMES if name in breakdown}
    result = dict(
        preset=preset, method=method, ops=ops, variant=variant, device=str(device), batch=opts.batch_size,
        batch_gpu=opts.batch_gpu, resolution=PRESET_RES[preset], steps=steps, warmup=warmup,
        img_per_s=images / seconds, sec_per_kimg=seconds / images * 1000, ms_per_step=seconds / steps * 1000,
        peak_gpu_mem_gb=peak_gb, peak_gpu_mem_gb_warmup=peak_gb_warm, rss_gb_after_warmup=rss_warm, rss_gb_after_steps=rss_steps,
        rss_growth_gb=rss_steps - rss_warm, peak_rss_gb=peak_rss_gb(), train_args=" ".join(train_args),
        phase_ms_per_step=phases,
        augment_ms_per_step=breakdown.get("augment", 0.0) / steps * 1000,
        contrastive_ms_per_step=breakdown.get("contrastive", 0.0) / steps * 1000,
        compile_fallback=_compile_fallback(trainer),
    )
    del trainer
    if cuda:
        torch.cuda.empty_cache()
    return result


def _compile_fallback(trainer: Any) -> Optional[str]:
    fast = getattr(getattr(trainer, "phase_speed", None), "fast", {})
    reasons = {getattr(m, "failed", None) for m in fast.values()} - {None}
    return "; ".join(sorted(reasons)) or None


def ratios(results: list[dict]) -> list[dict]:
    """sec/kimg ratios within this run: method/ada, variant/plain, ops ref/fused ('speedup' = inverse)."""
    def key(r, **change):
        k = dict(preset=r["preset"], method=r["method"], ops=r["ops"], variant=r["variant"])
        k.update(change)
        return tuple(sorted(k.items()))

    table = {key(r): r for r in results}
    out = []
    for r in results:
        for label, change in (("method/ada", dict(method="ada")), ("variant/plain", dict(variant="plain")),
                              ("ops/cuda", dict(ops="cuda")), ("ops/auto", dict(ops="auto"))):
            base = table.get(key(r, **change))
            if base is None or base is r:
                continue
            name = {"method/ada": f"{r['method']}/ada", "variant/plain": f"{r['variant']}/plain",
                    "ops/cuda": f"{r['ops']}/cuda", "ops/auto": f"{r['ops']}/auto"}[label]
            out.append(dict(ratio=name, preset=r["preset"], method=r["method"], ops=r["ops"], variant=r["variant"],
                            sec_per_kimg_ratio=r["sec_per_kimg"] / base["sec_per_kimg"],
                            speedup=base["sec_per_kimg"] / r["sec_per_kimg"]))
    return out


def print_table(results: list[dict], ratio_rows: list[dict]) -> None:
    header = ["preset", "method", "ops", "variant", "img/s", "sec/kimg", "peak GB", "RSS warm", "RSS end",
              "Gmain", "Greg", "Dmain", "Dreg", "augment", "contrastive"]
    rows = []
    for r in results:
        ph = r["phase_ms_per_step"]
        rows.append([r["preset"], r["method"], r["ops"], r["variant"], f"{r['img_per_s']:.1f}", f"{r['sec_per_kimg']:.1f}",
                     "-" if r["peak_gpu_mem_gb"] is None else f"{r['peak_gpu_mem_gb']:.2f}",
                     f"{r['rss_gb_after_warmup']:.2f}", f"{r['rss_gb_after_steps']:.2f}",
                     *[f"{ph.get(n, 0.0):.0f}" for n in ("Gmain", "Greg", "Dmain", "Dreg")],
                     f"{r['augment_ms_per_step']:.0f}", f"{r['contrastive_ms_per_step']:.0f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("\nPer-phase columns: ms per training step (lazy Greg/Dreg averaged over the steps).")
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if ratio_rows:
        print("\nRatios of sec/kimg within this run (>1 = slower than the base):")
        for r in ratio_rows:
            print(f"  {r['preset']:<9} {r['method']:<9} {r['ops']:<4} {r['variant']:<22} {r['ratio']:<26} "
                  f"{r['sec_per_kimg_ratio']:.3f}")


@click.command()
@click.option("--presets", default="tiny", show_default=True, help="Comma-separated: tiny, paper256, stylegan2")
@click.option("--methods", default="ada,fakeclr", show_default=True, help="Comma-separated: ada, adalinear, insgen, fakeclr, contragan")
@click.option("--ops", "ops_list", default="auto", show_default=True, help="Comma-separated: auto, cuda, ref")
@click.option("--variants", default=None, help="Comma-separated variants ('+' combines) [default: CPU plain,channels_last; "
              "CUDA plain,fp32,channels_last,bf16,fused_adam]")
@click.option("--steps", type=int, default=16, show_default=True, help="Timed steps (16 = one lazy R1 interval)")
@click.option("--warmup", type=int, default=2, show_default=True, help="Untimed steps first (step 0 runs every phase)")
@click.option("--batch", type=int, default=None, help="Override the preset's batch")
@click.option("--device", "device_name", default=None, help="cuda or cpu [default: cuda if available]")
@click.option("--cache-dir", default=os.path.join(tempfile.gettempdir(), "fakeclr-train-bench"), show_default=True)
@click.option("--threads", type=int, default=None, help="torch.set_num_threads [default: torch's]")
@click.option("--breakdown/--no-breakdown", default=True, show_default=True,
              help="CUDA: a second, synchronised pass for the per-phase times (doubles the time)")
@click.option("--train-args", "train_args", default="", help="Extra train.py options for every configuration "
              "(space-separated), e.g. --cl_query_view=independent")
@click.option("--baseline-commit", default=None, help="Also run every configuration on this commit (a temporary "
              "git worktree), alternating old/new in subprocesses, and report new/old img/s per round")
@click.option("--rounds", type=int, default=3, show_default=True, help="With --baseline-commit: alternating rounds")
def main(presets, methods, ops_list, variants, steps, warmup, batch, device_name, cache_dir, threads, breakdown,
         train_args, baseline_commit, rounds):
    """Time training steps for every combination of the given presets, methods, ops and variants."""
    import warnings

    import torch

    if threads:
        torch.set_num_threads(threads)
    device_name = device_name or ("cuda" if torch.cuda.is_available() else "cpu")
    if variants is None:
        variants = "plain,channels_last" if device_name == "cpu" else "plain,fp32,channels_last,bf16,fused_adam"
    if baseline_commit:
        from benchmarks import baseline_compare  # ROOT is on sys.path (script and package use)

        grid = itertools.product(presets.split(","), methods.split(","), ops_list.split(","), variants.split(","))
        common = [f"--steps={steps}", f"--warmup={warmup}", f"--device={device_name}", f"--cache-dir={cache_dir}",
                  *([f"--threads={threads}"] if threads else []), *([f"--batch={batch}"] if batch else []),
                  *([f"--train-args={train_args}"] if train_args else [])]
        configs = [(f"{p}/{m}/{o}/{v}", [f"--presets={p}", f"--methods={m}", f"--ops={o}", f"--variants={v}", *common])
                   for p, m, o, v in grid]
        baseline_compare.print_summary(baseline_compare.compare(baseline_commit, configs, rounds))
        return
    warnings.filterwarnings("once")
    results = []
    grid = itertools.product(presets.split(","), methods.split(","), ops_list.split(","), variants.split(","))
    for preset, method, ops, variant in grid:
        result = bench_one(preset, method, ops, variant, steps, warmup, batch, cache_dir, device_name, breakdown,
                           tuple(train_args.split()))
        result.update(torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count())
        if device_name.startswith("cuda"):
            result["gpu"] = torch.cuda.get_device_name()
        print(json.dumps(result), flush=True)
        results.append(result)
    ratio_rows = ratios(results)
    for row in ratio_rows:
        print(json.dumps(row), flush=True)
    print_table(results, ratio_rows)


if __name__ == "__main__":
    main()

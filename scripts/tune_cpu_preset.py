"""Tune the CPU preset by measurement: FID against CPU time for a few variants of `--cfg=tiny`.

Each variant is train.py's own options for `--cfg=tiny` (so every other default is what train.py would use)
with a few fields overridden: learning rates, batch, R1 gamma, EMA, mapping depth, width. It trains one
variant at a time in this process on one thread and, every `--eval-kimg`, scores G_ema with the few-shot
protocol (FID/KID of `--num-gen` fakes against the whole training set, x-flips included) and records the
process's CPU seconds so far. CPU seconds, not wall seconds: on a shared machine they still compare
variants fairly (a busy neighbour slows the wall clock, not the work a step costs). One JSON line per
evaluation goes to `--out` (appended; a rerun skips evaluations already recorded).

    OMP_NUM_THREADS=1 python scripts/tune_cpu_preset.py --data=runs/emoji-smileys-32.zip --out=tune.jsonl \\
        --variants=base,lr2x,lr4x --kimg=12 --eval-kimg=2
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.tune_cpu_preset`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import json
import os
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> overrides of train.py's resolved options (None: the preset's value). Learning rates apply to G and D.
VARIANTS = {
    "base": {},
    "lr2x": {"lr": 0.005},
    "lr4x": {"lr": 0.01},
    "lr2x-b16": {"lr": 0.005, "batch": 16},
    "lr2x-gamma0.1": {"lr": 0.005, "gamma": 0.1},
    "lr2x-gamma0.01": {"lr": 0.005, "gamma": 0.01},
    "lr2x-ema0.5": {"lr": 0.005, "ema_kimg": 0.5},
    "lr2x-map1": {"lr": 0.005, "map": 1},
    "lr2x-wide": {"lr": 0.005, "channel_max": 64},
}


def resolve_variant(data: str, method: str, seed: int, variant: str) -> dict:
    import train

    args = [f"--outdir={os.path.join(ROOT, 'runs', 'tune')}", f"--data={data}", "--cfg=tiny", f"--method={method}",
            "--mirror=True", "--metrics=none", "--workers=1", "--kimg=100000", f"--seed={seed}"]
    overrides = VARIANTS[variant]
    if "batch" in overrides:
        args.append(f"--batch={overrides['batch']}")
    if "gamma" in overrides:
        args.append(f"--gamma={overrides['gamma']}")
    ctx = train.main.make_context("train.py", args)
    params = dict(ctx.params)
    params.pop("dry_run", None)
    opts, _ = train.resolve_options(params)
    opts.run_dir = None
    if "lr" in overrides:
        opts.G_opt_kwargs.lr = opts.D_opt_kwargs.lr = overrides["lr"]
    if "ema_kimg" in overrides:
        opts.ema_kimg = overrides["ema_kimg"]
    if "map" in overrides:
        opts.G_kwargs.mapping_kwargs.num_layers = overrides["map"]
    if "channel_max" in overrides:
        for kwargs in (opts.G_kwargs.synthesis_kwargs, opts.D_kwargs):
            kwargs.channel_max = overrides["channel_max"]
            kwargs.channel_base = max(kwargs.channel_base, overrides["channel_max"] * 32)
    return opts


def recorded(out: str) -> set[tuple]:
    if not os.path.exists(out):
        return set()
    with open(out) as f:
        return {(r["variant"], r["method"], r["seed"], r["kimg"]) for r in map(json.loads, f) if r}


def train_variant(data: str, method: str, seed: int, variant: str, kimg: float, eval_kimg: float, num_gen: int,
                  out: str) -> None:
    import torch

    from scripts.compare.scores import InceptionEvaluator
    from training.training_loop import Trainer

    opts = resolve_variant(data, method, seed, variant)
    done = recorded(out)
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    trainer.setup()
    evaluate = InceptionEvaluator(seed=0, batch_size=50)
    cpu_start, wall_start = time.process_time(), time.time()
    cpu_scoring = 0.0
    next_eval = eval_kimg
    while trainer.cur_nimg < kimg * 1000:
        trainer.train_step()
        if trainer.cur_nimg >= next_eval * 1000 or trainer.cur_nimg >= kimg * 1000:
            at = round(next_eval, 3)
            next_eval += eval_kimg
            if (variant, method, seed, at) in done:
                continue
            before = time.process_time()
            scores = evaluate(trainer.G_ema, dict(opts.training_set_kwargs), num_gen)
            cpu_scoring += time.process_time() - before
            p = float(trainer.augment_pipe.p) if trainer.augment_pipe is not None else 0.0
            row = dict(variant=variant, method=method, seed=seed, kimg=at, fid=scores["fid"], kid=scores["kid"],
                       cpu_s=time.process_time() - cpu_start - cpu_scoring, wall_s=time.time() - wall_start,
                       ada_p=p, overrides=VARIANTS[variant], date=time.strftime("%Y-%m-%d"))
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    save_final_generator(trainer, out, f"{variant}-{method}-seed{seed}")


def save_final_generator(trainer, out: str, name: str) -> None:
    """G_ema beside the results file, for sample grids (generate.py --network=...)."""
    from training import network_pickle

    path = os.path.join(os.path.dirname(os.path.abspath(out)), f"{name}.pkl")
    dataset_kwargs = dict(trainer.training_options.training_set_kwargs)
    network_pickle.save_network_pkl(path, dict(G_ema=trainer.G_ema, training_set_kwargs=dataset_kwargs))


@click.command()
@click.option("--data", required=True, metavar="ZIP", help="Training set (32 px zip from dataset_tool.py)")
@click.option("--out", required=True, metavar="JSONL", help="Results file (appended)")
@click.option("--variants", default="base,lr2x,lr4x", show_default=True, help=f"Comma list of {', '.join(VARIANTS)}")
@click.option("--method", default="ada", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--kimg", default=12.0, show_default=True, type=float)
@click.option("--eval-kimg", default=2.0, show_default=True, type=float)
@click.option("--num-gen", default=500, show_default=True, type=int)
def main(data, out, variants, method, seed, kimg, eval_kimg, num_gen):
    """Score variants of the tiny preset by FID against CPU time."""
    import torch

    torch.set_num_threads(1)
    for variant in variants.split(","):
        if variant not in VARIANTS:
            raise click.BadParameter(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}",
                                     param_hint="--variants")
    for variant in variants.split(","):
        train_variant(data, method, seed, variant, kimg, eval_kimg, num_gen, out)


if __name__ == "__main__":
    main()

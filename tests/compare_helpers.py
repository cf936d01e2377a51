"""Shared pieces of the comparison-harness tests: a scoring evaluator that counts its calls, a tiny dataset."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from scripts.compare.scores import ColourEvaluator

REPO = pathlib.Path(__file__).resolve().parents[1]


# Hang guard for a harness subprocess, not a speed limit: the slowest (Inception scoring of a trained comparison)
# took 95 s on a loaded 2-core machine; 30 minutes is many times that.
HANG_GUARD_S = 1800


def harness_env(tmp_path: pathlib.Path) -> dict:
    """Environment of a harness subprocess: its own cache, and one thread per process.

    One thread because the harness's training and scoring children share the machine with pytest itself;
    several processes each running two OpenMP threads on two busy cores slow down by far more than 2x
    (a scoring run that takes 95 s went past 600 s that way).
    """
    return dict(os.environ, DNNLIB_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")


class CountingEvaluator(ColourEvaluator):
    """The harness's colour evaluator, counting how many snapshots it scored."""

    def __init__(self):
        super().__init__(seed=0, batch_size=16)
        self.calls = 0

    def __call__(self, G, dataset_kwargs, num_gen):
        self.calls += 1
        return super().__call__(G, dataset_kwargs, num_gen)


def make_emoji24_zip(folder: pathlib.Path) -> pathlib.Path:
    """The first 24 embedded emoji at 32 px, through dataset_tool.py."""
    out = folder / "emoji24.zip"
    subprocess.run([sys.executable, "dataset_tool.py", "--source=datasets/emoji-smileys", f"--dest={out}",
                    "--resolution=32x32", "--max-images=24"], cwd=REPO, check=True, capture_output=True)
    return out


def hand_made_run(method: str, seed: int, fid: float, kid: float, ppl: float, jumps_z: float, status: str = "done",
                  dataset: str = "toy") -> dict:
    """One run of a benchmark results file (dataset `toy`, 100 kimg), final FID/KID as given, best 10 FID lower."""
    point = dict(kimg=100.0, fid=fid, kid=kid)
    return dict(kind="bench", dataset=dataset, method=method, seed=seed, status=status, kimg=100.0, target_kimg=100.0,
                options=dict(cfg="tiny", resolution=32, mirror=True, kimg=100.0, tick=1, snap=10, num_gen=500,
                             eval_seed=0),
                curve=[dict(kimg=0.0, fid=300.0, kid=0.3), point], final=dict(point),
                best=dict(kimg=20.0, fid=fid - 10, kid=kid), train_seconds=1.0, eval_seconds=1.0, threads=1,
                load_average={}, git_commit="abc", run_dirs=[], local_dir="bench/toy/seed0",
                continuity=dict(ppl_w=dict(mean=ppl, std=ppl / 2, samples=5000, crop=True), snapshot="s.pkl",
                                smoothness=dict(z=dict(mean=0.01, max=0.3, jump_fraction=jumps_z, jumps=0, steps=512),
                                                w=dict(mean=0.01, max=0.1, jump_fraction=0.0, jumps=0, steps=512)),
                                options={}, kimg=100.0, seconds=50.0))

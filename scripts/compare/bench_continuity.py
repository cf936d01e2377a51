"""Per-run latent continuity of a benchmark: the FakeCLR paper's Table 2 analogue on each run's final snapshot.

The measurements of scripts/latent_continuity.py (metrics/latent_continuity.py, metrics/interpolation.py) at
settings that cost about a minute per run on one thread: interpolation smoothness in Z and W (mean step
difference and the fraction of steps above the paper's 0.2, the "jumps") and PPL in W (mean and std of the
1 %..99 % trimmed samples). No inversion: its projector costs many minutes per image.

The numbers go into the run's entry of the committed results file under "continuity", with the options and the
snapshot they come from; a rerun keeps them while the options and the snapshot are unchanged (never measured twice).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Optional

from scripts.compare import bench_results, bench_stats
from scripts.compare.errors import HarnessError

# 5000 PPL samples as the script's default (~41 s at 32 px on one idle thread, 122 samples/s, measured on a
# 100-kimg tiny snapshot); 32 pairs x 16 steps in Z and W (~1 s). No inversion (--invert=0).
PAIRS, STEPS, PPL_SAMPLES, SEED = 32, 16, 5000, 0


class LatentContinuity:
    """measure(snapshot, data) -> {"ppl_w": {...}, "smoothness": {"z": {...}, "w": {...}}} on the CPU.

    The VGG16/LPIPS weights are loaded when the object is made, so that missing weights stop the benchmark
    before it trains anything (one line, how to get them)."""

    def __init__(self, pairs: int = PAIRS, steps: int = STEPS, ppl_samples: int = PPL_SAMPLES, seed: int = SEED,
                 vgg: Any = None):
        import torch

        from metrics import detectors
        from metrics.latent_continuity import ContinuityOptions

        self.device = torch.device("cpu")
        self.opts = ContinuityOptions(pairs=pairs, steps=steps, ppl_samples=ppl_samples, invert=0, seed=seed)
        if vgg is None:
            try:
                vgg = detectors.get_vgg16(self.device, None)
            except (FileNotFoundError, ValueError, OSError) as err:
                raise HarnessError(f"the per-run latent continuity needs VGG16/LPIPS weights: {err}") from None
        self.vgg = vgg

    @property
    def options(self) -> dict:
        """What defines the numbers (recorded beside them; a change measures every run again)."""
        return dict(dataclasses.asdict(self.opts), ppl_spaces=["w"])

    def __call__(self, snapshot: str, data: str) -> dict:
        from metrics.interpolation import SPACES, latent_pairs, measure_smoothness
        from metrics.latent_continuity import measure_ppl
        from training.network_pickle import load_network_pkl

        G = load_network_pkl(snapshot)["G_ema"].to(self.device).eval().requires_grad_(False)
        z0, z1 = latent_pairs(G.z_dim, self.opts.pairs, self.opts.seed)
        smoothness = {space: measure_smoothness(G, z0, z1, self.opts.steps, space, self.opts.threshold)[0].summary()
                      for space in SPACES}
        ppl = measure_ppl(G, data, self.vgg, self.opts, "w", self.device) if self.opts.ppl_samples > 0 else None
        return dict(ppl_w=ppl, smoothness=smoothness)


def is_current(entry: dict, options: dict, snapshot: Optional[str]) -> bool:
    """The entry already holds numbers of these options (from this snapshot, when it is known here)."""
    old = entry.get("continuity")
    if not old or old.get("options") != options:
        return False
    return snapshot is None or old.get("snapshot") == os.path.basename(snapshot)


def carry_over(old: Optional[dict], new: dict) -> None:
    """A re-recorded run keeps numbers measured on its (unchanged) final snapshot."""
    if old and old.get("continuity") and (old.get("final") or {}).get("kimg") == (new.get("final") or {}).get("kimg"):
        new["continuity"] = old["continuity"]


def measure_run(results: dict, key: str, outdir: str, data: str, measure: Callable, log: Callable) -> bool:
    """Measure a done run's final snapshot unless its numbers are there already; True when measured."""
    entry = results["runs"].get(key) or {}
    if entry.get("status") != "done" or entry.get("kind") != "bench":
        return False
    snapshot = bench_results.final_snapshot(results, outdir, entry["dataset"], entry["method"], entry["seed"])
    if is_current(entry, measure.options, snapshot):
        return False
    if snapshot is None or not os.path.exists(data):
        log(f"[{key}] latent continuity: no local final snapshot (or data); left pending")
        return False
    log(f"[{key}] latent continuity of {os.path.basename(snapshot)}: PPL in W ({measure.options['ppl_samples']} "
        f"samples), interpolation jumps in Z and W...")
    start = time.time()
    values = measure(snapshot, data)
    entry["continuity"] = dict(values, options=measure.options, snapshot=os.path.basename(snapshot),
                               kimg=entry["final"]["kimg"] if entry.get("final") else None,
                               seconds=round(time.time() - start, 1))
    ppl = values.get("ppl_w") or {}
    log(f"[{key}] PPL-W {ppl.get('mean', float('nan')):.4g} ± {ppl.get('std', float('nan')):.4g}, jumps Z "
        f"{values['smoothness']['z']['jump_fraction']:.1%}, W {values['smoothness']['w']['jump_fraction']:.1%} "
        f"({time.time() - start:.0f} s)")
    return True


# Values of an entry's continuity for the report: (name, getter). Lower is better in every one.
METRICS: tuple[tuple[str, Callable[[dict], Optional[float]]], ...] = (
    ("PPL-W mean", lambda c: (c.get("ppl_w") or {}).get("mean")),
    ("PPL-W std", lambda c: (c.get("ppl_w") or {}).get("std")),
    ("jumps Z", lambda c: c["smoothness"]["z"]["jump_fraction"]),
    ("jumps W", lambda c: c["smoothness"]["w"]["jump_fraction"]),
)


def values_by_seed(runs: dict, dataset: str, method: str, getter: Callable[[dict], Optional[float]]) -> dict[int, float]:
    """{seed: value} of the done runs of one method that have continuity numbers."""
    out = {}
    for run in bench_stats.finished_runs(runs, dataset, method):
        value = getter(run["continuity"]) if run.get("continuity") else None
        if value is not None:
            out[int(run["seed"])] = float(value)
    return out

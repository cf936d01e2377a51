"""Scores: evaluators (G -> FID and KID of N fakes vs the full training set) and the scoring of every snapshot."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Optional

from scripts.compare.bench_stats import scoring_bucket
from scripts.compare.presets import Settings
from scripts.compare.state import fingerprint, load_snapshot, method_record, now, rel, run_number, save_state, snapshots
from dnnlib.util import format_time
from training import run_dir as rundir


class InceptionEvaluator:
    """FID and KID (Inception-v3 features) of num_gen fakes vs the full dataset, one feature pass, fixed seed."""

    name = "inception"

    def __init__(self, seed: int = 0, batch_size: int = 64, inception: Optional[str] = None, device: Any = None):
        import torch

        self.seed = seed
        self.batch_size = batch_size
        self.inception = inception
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def metric_names(self, num_gen: int) -> tuple[str, str]:
        from metrics import few_shot

        return few_shot.metric_names(num_gen)

    def detector(self, opts: Any) -> Any:
        return None  # Inception (metrics.runners.inception_features)

    def __call__(self, G: Any, dataset_kwargs: dict, num_gen: int) -> dict:
        import numpy as np

        from metrics import few_shot
        from metrics.features import MetricOptions

        state = np.random.get_state()
        np.random.seed(self.seed)  # KID's subsets: same draw for every snapshot
        try:
            opts = MetricOptions(G=G, dataset_kwargs=dict(dataset_kwargs), device=self.device, batch_size=self.batch_size,
                                 progress=True, inception=self.inception)
            return few_shot.fid_kid_full(opts, num_gen, seed=self.seed, detector=self.detector(opts))
        finally:
            np.random.set_state(state)


class ColourEvaluator(InceptionEvaluator):
    """Pipeline check without Inception weights: FID/KID formulas on 4x4 average colours (48-d). NOT FID."""

    name = "colour"

    def metric_names(self, num_gen: int) -> tuple[str, str]:
        from metrics import few_shot

        return tuple(f"colour-{name}" for name in few_shot.metric_names(num_gen))

    def detector(self, opts: Any) -> Any:
        import torch.nn.functional as F

        from metrics.features import Detector

        return Detector("colour4x4", lambda img: F.adaptive_avg_pool2d(img.float() / 255, 4).flatten(1))


EVALUATORS = {"inception": InceptionEvaluator, "colour": ColourEvaluator}


def make_evaluator(settings: Settings) -> Callable:
    cls = EVALUATORS[settings.evaluator]
    return cls(seed=settings.eval_seed, batch_size=settings.eval_batch, inception=settings.inception)


def evaluator_name(evaluator: Callable) -> str:
    return getattr(evaluator, "name", None) or getattr(evaluator, "__qualname__", None) or type(evaluator).__name__


def evaluator_metric_names(evaluator: Callable, num_gen: int) -> tuple[str, str]:
    names = getattr(evaluator, "metric_names", None)
    return tuple(names(num_gen)) if callable(names) else ("fid", "kid")


def evaluate_method(settings: Settings, state: dict, method: str, evaluator: Callable, log: Callable) -> None:
    """Score every snapshot of the method not yet scored with the current evaluation settings."""
    record = method_record(state, method)
    eval_key = settings.eval_key(evaluator_name(evaluator))
    records = record["snapshots"]
    for path in snapshots_to_score(settings, method):
        key = rel(settings, path)
        old = records.get(key)
        if old is not None and old.get("fingerprint") == fingerprint(path) and old.get("eval") == eval_key:
            continue
        nimg, data = load_snapshot(path)
        dataset_kwargs = snapshot_dataset_kwargs(data, settings, key, log)
        if settings.eval_data is not None:
            dataset_kwargs.update(path=settings.eval_data, max_size=None)
            dataset_kwargs.pop("resolution", None)
        log(f"[{method}] scoring {key} ({nimg / 1000:g} kimg) with {settings.num_gen} fakes...")
        start = time.time()
        values = evaluator(data["G_ema"], dataset_kwargs, settings.num_gen)
        seconds = time.time() - start
        records[key] = dict(fingerprint=fingerprint(path), nimg=nimg, kimg=nimg / 1000, fid=float(values["fid"]),
                            kid=float(values["kid"]), eval=eval_key, eval_seconds=round(seconds, 2), evaluated=now())
        record["eval_seconds"] = record.get("eval_seconds", 0.0) + seconds
        log(f"[{method}] {nimg / 1000:g} kimg: FID {values['fid']:.4g}, KID {values['kid']:.4g} ({format_time(seconds)})")
        summarize_method(settings, record)
        save_state(state, settings)
    summarize_method(settings, record)
    record["status"] = "done"
    record["eval"] = eval_key
    save_state(state, settings)


def snapshot_dataset_kwargs(data: dict, settings: Settings, key: str, log: Callable) -> dict:
    """The snapshot's dataset options when they check out (training/dataset_options.py), else the comparison's data."""
    from training.dataset_options import DatasetOptionsError, dataset_kwargs_from_file

    fallback = dict(path=settings.data, xflip=bool(settings.mirror))
    if data.get("training_set_kwargs") is None:
        return fallback
    try:
        return dataset_kwargs_from_file(data["training_set_kwargs"], key)
    except DatasetOptionsError as error:
        log(f"{error}; scoring against --data={settings.data} instead")
        return fallback


def snapshots_to_score(settings: Settings, method: str) -> list[str]:
    """Every snapshot, or with --score-every=K only the first snapshot at or past each multiple of K kimg and the newest.

    (Scoring costs more than training on a CPU; a long run can keep frequent snapshots, for resuming and
    for scoring more of them later, without paying for every score.)
    """
    paths = snapshots(settings, method)
    if not settings.score_every:
        return paths
    chosen, buckets = [], set()
    for path in sorted(paths, key=snapshot_kimg_from_name):
        bucket = scoring_bucket(snapshot_kimg_from_name(path), settings.score_every)
        if bucket not in buckets or path == paths[-1]:
            buckets.add(bucket)
            chosen.append(path)
    if paths and paths[-1] not in chosen:
        chosen.append(paths[-1])
    return chosen


def snapshot_kimg_from_name(path: str) -> float:
    """network-snapshot-000012.pkl -> 12, network-snapshot-000000.064.pkl -> 0.064 (the one parser, run_dir's)."""
    return (rundir.snapshot_nimg(path) or 0) / 1000


def summarize_method(settings: Settings, record: dict) -> None:
    """Curve (one point per kimg, newest run wins), final and best points."""
    by_nimg: dict[int, tuple[int, dict]] = {}
    for key, snap in record.get("snapshots", {}).items():
        if not os.path.exists(os.path.join(settings.outdir, key)):
            continue
        order = run_number(os.path.dirname(os.path.join(settings.outdir, key)))
        if snap["nimg"] not in by_nimg or order >= by_nimg[snap["nimg"]][0]:
            by_nimg[snap["nimg"]] = (order, dict(snap, snapshot=key))
    curve = [dict(kimg=s["kimg"], fid=s["fid"], kid=s["kid"], snapshot=s["snapshot"])
             for _, (_, s) in sorted(by_nimg.items())]
    if not curve and record.get("curve"):  # run dirs deleted after scoring: keep what was measured
        return
    record["curve"] = curve
    record["final"] = dict(curve[-1]) if curve else None
    finite = [p for p in curve if math.isfinite(p["fid"])]
    record["best"] = dict(min(finite, key=lambda p: p["fid"])) if finite else None
    record["kimg"] = curve[-1]["kimg"] if curve else 0.0

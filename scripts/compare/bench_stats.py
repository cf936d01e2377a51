"""Statistics of a benchmark over seeds: mean ± std per method, paired differences against a baseline.

Paired over seeds: for every seed both the method and the baseline finished, d = baseline − method
(positive = the method has the lower, better score). Reported: n, mean ± std of d (std with ddof=1),
the sign count (seeds where the method is better) and the paired t statistic mean / (std / sqrt(n)),
beside the |t| that a two-sided test at 5 % needs with n − 1 degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

# (name in the report, which point of a run, which score)
METRICS = (("final FID", "final", "fid"), ("best FID", "best", "fid"),
           ("final KID", "final", "kid"), ("best KID", "best", "kid"))


# Student's t, two-sided 5 % critical values by degrees of freedom (n − 1), from the standard tables: with
# the 2-5 seeds a CPU benchmark affords, the bar falls from 12.7 to 2.8, so the report prints it per row.
T_CRITICAL_5PCT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
                   10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t_critical(n: int) -> Optional[float]:
    """The |t| a paired test over n seeds needs at 5 % two-sided (conservative between tabled df); None below 2."""
    if n < 2:
        return None
    return T_CRITICAL_5PCT[max(df for df in T_CRITICAL_5PCT if df <= n - 1)]


@dataclass
class Summary:
    n: int
    mean: Optional[float]
    std: Optional[float]  # None below two values


@dataclass
class Paired:
    n: int
    mean: Optional[float]
    std: Optional[float]
    better: int  # seeds where the method beats the baseline
    t: Optional[float]  # None when n < 2 or the differences do not vary


def summarize(values: list[float]) -> Summary:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return Summary(0, None, None)
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Summary(len(values), mean, None)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Summary(len(values), mean, math.sqrt(var))


def paired(baseline: dict[int, float], method: dict[int, float]) -> Paired:
    """Paired differences baseline − method over the seeds both have."""
    seeds = sorted(set(baseline) & set(method))
    diffs = [baseline[s] - method[s] for s in seeds]
    stats = summarize(diffs)
    t = stats.mean / (stats.std / math.sqrt(stats.n)) if stats.std else None
    return Paired(stats.n, stats.mean, stats.std, sum(d > 0 for d in diffs), t)


def lower_by(first: dict[int, float], second: dict[int, float]) -> Paired:
    """Paired differences first − second over the seeds both have; `better` counts seeds where first is lower."""
    flipped = paired(second, first)  # second − first; its `better` counts the seeds where first is lower
    return Paired(flipped.n, _negated(flipped.mean), flipped.std, flipped.better, _negated(flipped.t))


def _negated(value: Optional[float]) -> Optional[float]:
    return None if value is None else 0.0 - value  # not -value: a zero difference must not print as -0.000


def finished_runs(runs: dict, dataset: str, method: str) -> list[dict]:
    """The finished runs of one method on one dataset (a partial run is in no statistic)."""
    return [run for run in runs.values()
            if run["dataset"] == dataset and run["method"] == method and run.get("status") == "done"]


def scores_by_seed(runs: dict, dataset: str, method: str, point: str, score: str) -> dict[int, float]:
    """{seed: value} of the finished runs of one method on one dataset."""
    return {int(run["seed"]): float(run[point][score]) for run in finished_runs(runs, dataset, method) if run.get(point)}


def scoring_bucket(kimg: float, score_every: float) -> int:
    """Which scoring point a snapshot at kimg stands for: the multiple of score_every at or below it.

    The harness scores the first snapshot of each bucket (scores.snapshots_to_score) and the report files
    the scores under the bucket's nominal kimg (curve_band): one rule for both.
    """
    return int(kimg // score_every)


def final_minus_best(runs: dict, dataset: str, method: str, score: str = "fid") -> dict[int, float]:
    """{seed: final − best}: how far each finished run had fallen from its best scored point by its end."""
    final = scores_by_seed(runs, dataset, method, "final", score)
    best = scores_by_seed(runs, dataset, method, "best", score)
    return {seed: final[seed] - best[seed] for seed in final if seed in best}


def scores_at_points(runs: dict, dataset: str, method: str, score: str = "fid") -> dict[int, dict[int, float]]:
    """{kimg: {seed: value}} of the finished runs' scored points, keyed by the whole kimg they were scored at. Two
    methods pair only where both were scored at the same kimg: a resumed run scored at 29 kimg has trained 9 kimg
    longer than one scored at 20, and early in training that is worth tens of FID points."""
    out: dict[int, dict[int, float]] = {}
    for run in finished_runs(runs, dataset, method):
        for p in run.get("curve", []):
            out.setdefault(round(p["kimg"]), {})[int(run["seed"])] = float(p[score])
    return dict(sorted(out.items()))


def curve_band(runs: dict, dataset: str, method: str, score: str = "fid",
               score_every: Optional[float] = None) -> list[tuple[float, Summary]]:
    """(kimg, summary over seeds) at every scored point that any finished run of the method has.

    With score_every (kimg between scored snapshots), a point is filed under its nominal kimg, the multiple of
    score_every at or below it: a resumed run's snapshots fall at odd kimg (49, 69 against 40, 60), and filing
    them apart would make the mean at 69 one seed's value. Without it, points are grouped by their exact kimg.
    """
    by_kimg: dict[float, list[float]] = {}
    for run in finished_runs(runs, dataset, method):
        for p in run.get("curve", []):
            kimg = scoring_bucket(p["kimg"], score_every) * score_every if score_every else round(p["kimg"], 3)
            by_kimg.setdefault(kimg, []).append(p[score])
    return [(kimg, summarize(values)) for kimg, values in sorted(by_kimg.items())]

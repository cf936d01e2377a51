"""The report of a benchmark, written beside its results file: results.md, FID-vs-kimg plots, pictures.

Everything in the results file is reported: every run (finished or partial), every seed; runs the
benchmark expects but nobody has recorded are listed as pending. Pictures need the run's snapshot,
so they are (re)drawn only on a machine that has it; the ones already drawn stay.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from scripts.compare import bench_continuity, bench_diagnostics, bench_results, bench_stats
from scripts.compare.presets import PRESETS, format_number
from scripts.compare.report import METHOD_COLOURS, fmt, train_time
from dnnlib.util import atomic_write
from scripts.line_plot import draw_plot

BASELINE = "adalinear"  # when the results name no preset: the linear-ramp method both contrastive methods build on


def _preset_of(results: dict) -> dict:
    """The harness preset the results file was made with ({} for one that names none)."""
    return PRESETS.get(results.get("benchmark", ""), {})


def baseline_of(results: dict) -> str:
    """The method every other one is paired against: the benchmark preset's own baseline (cpu-regime: noaug)."""
    return _preset_of(results).get("baseline", BASELINE)


def score_every_of(results: dict) -> Optional[float]:
    """kimg between the preset's scored snapshots (None: every snapshot is scored at its own kimg)."""
    return _preset_of(results).get("score_every")


def write_report(results: dict, report_dir: str, outdir: str, log: Callable = print,
                 pair: Optional[tuple[str, str]] = None) -> None:
    """pair: (first, second) methods whose paired differences first − second get their own table."""
    os.makedirs(report_dir, exist_ok=True)
    runs = bench_results.runs_of(results, "bench")
    datasets = sorted({r["dataset"] for r in runs.values()} | {k.split("/")[0] for k in results.get("expected", [])})
    for dataset in datasets:
        write_curve_plot(runs, dataset, os.path.join(report_dir, f"fid_vs_kimg-{dataset}.png"),
                         score_every_of(results))
        write_diagnostic_plots(runs, dataset, report_dir)
        write_pictures(results, outdir, report_dir, dataset, log)
    curves = bench_results.runs_of(results, "curve")
    for key, run in curves.items():
        series = {f"{run['method']} seed {run['seed']}": [(p["kimg"], p["fid"]) for p in run.get("curve", [])]}
        draw_plot(series, os.path.join(report_dir, f"budget_curve-{run['dataset']}.png"),
                  title=f"Budget run: FID vs kimg, {run['dataset']}", ylabel="FID", xlabel="kimg",
                  colours={name: METHOD_COLOURS.get(run["method"], (0, 0, 0)) for name in series})
    text = "\n".join(markdown(results, report_dir, datasets, pair)) + "\n"
    path = os.path.join(report_dir, "results.md")
    if _read_or_none(path) != text:  # an unchanged report is not rewritten
        with atomic_write(path, "w") as f:
            f.write(text)


def _read_or_none(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def methods_in(results: dict, runs: dict, dataset: Optional[str] = None) -> list[str]:
    """Methods expected or recorded (on `dataset` only, when given), in the order they were planned."""
    order = []
    for key in results.get("expected", []) + sorted(runs):
        data, method = key.split("/")[:2]
        if method not in order and dataset in (None, data):
            order.append(method)
    return order


def markdown(results: dict, report_dir: str, datasets: list[str], pair: Optional[tuple[str, str]] = None) -> list[str]:
    runs = bench_results.runs_of(results, "bench")
    done = [k for k, r in runs.items() if r.get("status") == "done"]
    expected = results.get("expected", [])
    pending = [k for k in expected if k not in done]
    methods = methods_in(results, runs)
    options = next(iter(runs.values()), {}).get("options", {}) if runs else {}
    lines = [f"# CPU benchmark `{results.get('benchmark')}`", "",
             f"Status: **{len([k for k in expected if k in done])} of {len(expected)} runs done**"
             + (f" ({len(done)} recorded in all)" if len(done) != len([k for k in expected if k in done]) else "")
             + f"; updated {results.get('updated', '')[:16]}.", "",
             protocol_line(options), ""]
    per_dataset = {dataset: methods_in(results, runs, dataset) for dataset in datasets}
    lines += table_lines(runs, datasets, per_dataset)
    lines += pair_lines(runs, datasets, per_dataset, pair, along_curve=bool(score_every_of(results))) if pair else []
    lines += paired_lines(runs, datasets, per_dataset, baseline_of(results))
    for dataset in datasets:
        if os.path.isfile(os.path.join(report_dir, f"fid_vs_kimg-{dataset}.png")):
            lines += [f"### FID vs kimg, {dataset} (mean over seeds, band ± 1 std)", "",
                      f"![FID vs kimg {dataset}](fid_vs_kimg-{dataset}.png)", ""]
    lines += picture_lines(report_dir, datasets, methods)
    lines += diagnostic_lines(runs, report_dir, datasets, methods)
    lines += curve_lines(results, report_dir)
    lines += continuity_run_lines(runs)
    lines += every_run_lines(results)
    lines += ["## Pending runs", ""] + ([f"- `{k}`" for k in pending] or ["(none)"]) + [""]
    return lines


def run_length(options: dict) -> str:
    kimg = f"{format_number(options.get('kimg', 0))} kimg"
    stop = options.get("stop_kimg")
    return kimg if stop is None else f"the first {format_number(stop)} kimg of a {kimg} schedule (`--stop-kimg`)"


def protocol_line(options: dict) -> str:
    if not options:
        return "No run recorded yet."
    return (f"Protocol: `--cfg={options.get('cfg')}`, {options.get('resolution')} px, --mirror={options.get('mirror')}, "
            f"{run_length(options)} per run, a snapshot every "
            f"{format_number(options.get('tick', 0) * options.get('snap', 1))} kimg; every snapshot scored with FID "
            f"and unbiased KID of {options.get('num_gen')} fakes (latent seed {options.get('eval_seed')}) against the "
            f"full training set with x-flips. Lower is better. FID with so few fakes is biased upwards: compare "
            f"methods with each other, not with the papers.")


def _mean_std(summary: bench_stats.Summary, scale: float = 1.0, digits: int = 2) -> str:
    if summary.mean is None:
        return "—"
    if summary.std is None:
        return f"{fmt(summary.mean * scale, digits)} (n=1)"
    return f"{fmt(summary.mean * scale, digits)} ± {fmt(summary.std * scale, digits)}"


def _has_continuity(runs: dict) -> bool:
    return any(r.get("continuity") for r in runs.values())


def _continuity_scale(name: str) -> float:
    return 100.0 if name.startswith("jumps") else 1.0  # jumps as % of interpolation steps


def table_lines(runs: dict, datasets: list[str], methods: dict[str, list[str]]) -> list[str]:
    continuity = bench_continuity.METRICS if _has_continuity(runs) else ()
    lines = ["## Final and best scores (mean ± std over seeds)", ""]
    if continuity:
        lines += ["Latent continuity of each run's final snapshot (the FakeCLR paper's Table 2 analogue, "
                  "scripts/compare/bench_continuity.py): PPL in W (mean and std of the trimmed samples of one run), "
                  "jumps = % of interpolation steps whose mean pixel change exceeds 0.2 (slerp in Z, lerp in W). "
                  "Lower is better everywhere.", ""]
    lines += ["| Dataset | Method | Seeds done | Final FID | Best FID | Final KID ×10³ | Best KID ×10³ |"
              + "".join(f" {name}{' (%)' if _continuity_scale(name) != 1 else ''} |" for name, _ in continuity),
              "|---|---|---|---|---|---|---|" + "---|" * len(continuity)]
    for dataset in datasets:
        for method in methods[dataset]:
            cells = []
            for _, point, score in bench_stats.METRICS:
                values = bench_stats.scores_by_seed(runs, dataset, method, point, score)
                cells.append(_mean_std(bench_stats.summarize(list(values.values())), 1000.0 if score == "kid" else 1.0))
            for name, getter in continuity:
                values = bench_continuity.values_by_seed(runs, dataset, method, getter)
                cells.append(_mean_std(bench_stats.summarize(list(values.values())), _continuity_scale(name), 3))
            seeds = sorted(bench_stats.scores_by_seed(runs, dataset, method, "final", "fid"))
            lines.append(f"| {dataset} | {method} | {len(seeds)} ({', '.join(map(str, seeds)) or '—'}) | "
                         + " | ".join(cells) + " |")
    return lines + [""]


AT_KIMG = "FID at "  # the label prefix of the pair table's along-the-curve rows


def _pair_values(runs: dict, dataset: str, method: str,
                 along_curve: bool = False) -> list[tuple[str, float, int, dict[int, float]]]:
    """(label, scale, digits, {seed: value}) of every metric of the pair table; along_curve adds final − best (how
    much a run lost late) and the FID at every kimg a run was scored at (where along training a difference arises)."""
    out = [(name + (" ×10³" if score == "kid" else ""), 1000.0 if score == "kid" else 1.0, 2,
            bench_stats.scores_by_seed(runs, dataset, method, point, score))
           for name, point, score in bench_stats.METRICS]
    if along_curve:
        out.append(("final − best FID", 1.0, 2, bench_stats.final_minus_best(runs, dataset, method)))
        out += [(f"{AT_KIMG}{kimg} kimg", 1.0, 2, values)
                for kimg, values in bench_stats.scores_at_points(runs, dataset, method).items()]
    if _has_continuity(runs):
        out += [(name + (" (%)" if _continuity_scale(name) != 1 else ""), _continuity_scale(name), 3,
                 bench_continuity.values_by_seed(runs, dataset, method, getter))
                for name, getter in bench_continuity.METRICS]
    return out


def pair_lines(runs: dict, datasets: list[str], methods: dict[str, list[str]], pair: tuple[str, str],
               along_curve: bool = False) -> list[str]:
    """The key pair, paired by seed: Δ = first − second (negative = the first method is better)."""
    first, second = pair
    cells = [d for d in datasets if first in methods[d] and second in methods[d]]
    if not cells:
        return []
    lines = [f"## {first} − {second}, paired by seed", "",
             f"Δ = value({first}) − value({second}) on the same training seed, for the seeds both finished (and both "
             f"measured); lower is better in every row, so a negative Δ favours {first}. Mean ± std (ddof 1) of Δ and "
             f"the number of seeds where {first} is lower; the paired t statistic with, in brackets, the |t| a two-sided "
             f"test at 5 % needs for that n."
             + (" Also paired: final − best FID (how far a run had fallen from its best score by its end) and the FID "
                "at every kimg where both runs of a seed were scored (a resumed run scored at 29 kimg is not paired "
                "with one scored at 20: it trained 9 kimg longer), to show where along training a difference arises."
                if along_curve else ""), "",
             f"| Dataset | Metric | n | Δ mean ± std | {first} lower in | t (needs) |", "|---|---|---|---|---|---|"]
    for dataset in cells:
        second_values = {label: values for label, *_, values in _pair_values(runs, dataset, second, along_curve)}
        for label, scale, digits, a in _pair_values(runs, dataset, first, along_curve):
            result = bench_stats.lower_by(a, second_values.get(label, {}))
            if label.startswith(AT_KIMG) and not result.n:
                continue  # a kimg where no seed of the other method was scored
            delta = _mean_std(bench_stats.Summary(result.n, result.mean, result.std), scale, digits)
            lines.append(f"| {dataset} | {label} | {result.n} | {delta} | {result.better} of {result.n} "
                         f"| {_t_cell(result)} |")
    return lines + [""]


def paired_lines(runs: dict, datasets: list[str], methods: dict[str, list[str]], baseline: str) -> list[str]:
    lines = [f"## Improvement over {baseline}, paired over seeds", "",
             f"Δ = score({baseline}) − score(method) for each seed both finished; positive = the method is better. "
             "Mean ± std of Δ, the number of seeds where the method is better, and the paired t statistic "
             "(mean / (std / √n)) with, in brackets, the |t| a two-sided test at 5 % needs for that n.", "",
             "| Dataset | Method | Metric | n | Δ mean ± std | Better in | t |", "|---|---|---|---|---|---|---|"]
    for dataset in datasets:
        for method in methods[dataset]:
            if method == baseline:
                continue
            if not set(bench_stats.scores_by_seed(runs, dataset, baseline, "final", "fid")) & set(
                    bench_stats.scores_by_seed(runs, dataset, method, "final", "fid")):
                lines.append(f"| {dataset} | {method} | all | 0 | — (no seed finished by both yet) | — | — |")
                continue
            for name, point, score in bench_stats.METRICS:
                base = bench_stats.scores_by_seed(runs, dataset, baseline, point, score)
                result = bench_stats.paired(base, bench_stats.scores_by_seed(runs, dataset, method, point, score))
                scale = 1000.0 if score == "kid" else 1.0
                label = name + (" ×10³" if score == "kid" else "")
                delta = _mean_std(bench_stats.Summary(result.n, result.mean, result.std), scale)
                lines.append(f"| {dataset} | {method} | {label} | {result.n} | {delta} | {result.better} of {result.n} "
                             f"| {_t_cell(result)} |")
    return lines + [""]


def _t_cell(result: bench_stats.Paired) -> str:
    if result.t is None:
        return "—"
    return f"{result.t:+.2f} ({bench_stats.t_critical(result.n):.2f})"


def write_curve_plot(runs: dict, dataset: str, path: str, score_every: Optional[float] = None) -> None:
    series, bands = {}, {}
    for method in sorted({r["method"] for r in runs.values() if r["dataset"] == dataset}):
        band = bench_stats.curve_band(runs, dataset, method, score_every=score_every)
        if not band:
            continue
        series[method] = [(kimg, s.mean) for kimg, s in band]
        bands[method] = [(kimg, s.mean - (s.std or 0.0), s.mean + (s.std or 0.0)) for kimg, s in band]
    if series:
        draw_plot(series, path, title=f"FID vs kimg: {dataset} (mean ± std over seeds)", ylabel="FID",
                  xlabel="kimg (thousands of real images shown to D)", colours=METHOD_COLOURS, bands=bands)


def picture_names(dataset: str, method: str) -> tuple[str, str]:
    return f"samples-{dataset}-{method}.png", f"interpolation-{dataset}-{method}.png"


def write_pictures(results: dict, outdir: str, report_dir: str, dataset: str, log: Callable) -> None:
    """Sample grid and interpolation strips of every method's seed-0 final snapshot that is on this machine."""
    from scripts.compare import pictures
    from training.network_pickle import load_network_pkl

    runs = bench_results.runs_of(results, "bench")
    for method in sorted({r["method"] for r in runs.values() if r["dataset"] == dataset and r.get("status") == "done"}):
        path = bench_results.final_snapshot(results, outdir, dataset, method, 0)
        if path is None:
            continue
        grid, strip = (os.path.join(report_dir, name) for name in picture_names(dataset, method))
        pictures.write_pictures(load_network_pkl(path)["G_ema"], grid, strip)
        log(f"[{dataset}/{method}/seed0] pictures from {os.path.basename(path)}")


def picture_lines(report_dir: str, datasets: list[str], methods: list[str]) -> list[str]:
    lines = []
    for dataset in datasets:
        found = [m for m in methods if os.path.isfile(os.path.join(report_dir, picture_names(dataset, m)[0]))]
        if not found:
            continue
        lines += [f"## Samples and interpolations, {dataset} (seed-0 run, final snapshot, same latents for every method)",
                  "", "| Method | Samples (4 × 8) | Interpolation strips (8 pairs × 8 steps, slerp in z) |", "|---|---|---|"]
        for method in found:
            grid, strip = picture_names(dataset, method)
            lines.append(f"| {method} | ![{method} samples]({grid}) | ![{method} interpolations]({strip}) |")
        lines.append("")
    return lines


def curve_lines(results: dict, report_dir: str) -> list[str]:
    lines = []
    for key, run in bench_results.runs_of(results, "curve").items():
        lines += [f"## Budget run `{key}` ({run['status']}, {format_number(run['kimg'])} of "
                  f"{format_number(run['target_kimg'])} kimg)", "",
                  f"![budget curve](budget_curve-{run['dataset']}.png)", "", "| kimg | FID | KID ×10³ |", "|---|---|---|"]
        lines += [f"| {format_number(p['kimg'])} | {fmt(p['fid'])} | {fmt(p['kid'] * 1000)} |" for p in run.get("curve", [])]
        lines.append("")
    return lines


def continuity_run_lines(runs: dict) -> list[str]:
    """Every bench run's own latent-continuity numbers (or why there are none yet)."""
    if not _has_continuity(runs):
        return []
    lines = ["## Latent continuity of every run (final snapshot)", "",
             "| Run | Snapshot | PPL-W mean | PPL-W std | Jumps Z (%) | Jumps W (%) | Step diff Z / W | Seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for key, run in sorted(runs.items()):
        c = run.get("continuity")
        if not c:
            lines.append(f"| `{key}` | {'pending' if run.get('status') == 'done' else 'run not done'} "
                         "| — | — | — | — | — | — |")
            continue
        ppl, z, w = c.get("ppl_w") or {}, c["smoothness"]["z"], c["smoothness"]["w"]
        lines.append(f"| `{key}` | {c.get('snapshot')} | {fmt(ppl.get('mean'), 3)} | {fmt(ppl.get('std'), 3)} "
                     f"| {fmt(z['jump_fraction'] * 100, 1)} | {fmt(w['jump_fraction'] * 100, 1)} "
                     f"| {fmt(z['mean'], 4)} / {fmt(w['mean'], 4)} | {fmt(c.get('seconds'), 0)} |")
    return lines + [""]


def every_run_lines(results: dict) -> list[str]:
    lines = ["## Every recorded run", "",
             "| Run | Status | kimg | Final FID | Best FID (kimg) | Train time | Score time | Threads | Load avg start → end "
             "(1/5/15 min) | Commit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, run in sorted(results["runs"].items()):
        final, best = run.get("final") or {}, run.get("best") or {}
        load = run.get("load_average") or {}
        lines.append(
            f"| `{key}` | {run['status']} | {format_number(run.get('kimg', 0))} | {fmt(final.get('fid'))} "
            f"| {fmt(best.get('fid'))} ({format_number(best.get('kimg', 0))}) | {train_time(run)} "
            f"| {train_time(dict(train_seconds=run.get('eval_seconds', 0)))} | {run.get('threads')} "
            f"| {_load(load.get('start'))} → {_load(load.get('end'))} | {str(run.get('git_commit', ''))[:10]} |")
    return lines + [""]


def _load(values: Optional[list]) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


DIAGNOSTIC_PLOTS = (  # (file prefix, statistic, title, y label)
    ("rt", "rt", "D overfitting heuristic r_t = E[sign D(real)]", "r_t"),
    ("cl_gain", "cl_gain", "Fake head: log(1+K) - InfoNCE loss without the forgetting term", "nats above chance"),
)


def write_diagnostic_plots(runs: dict, dataset: str, report_dir: str) -> None:
    for prefix, short, title, ylabel in DIAGNOSTIC_PLOTS:
        series, bands = {}, {}
        for method in sorted({r["method"] for r in runs.values() if r["dataset"] == dataset}):
            band = bench_diagnostics.series_over_seeds(runs, dataset, method, short)
            if band:
                series[method] = [(kimg, s.mean) for kimg, s in band]
                bands[method] = [(kimg, s.mean - (s.std or 0.0), s.mean + (s.std or 0.0)) for kimg, s in band]
        if series:
            draw_plot(series, os.path.join(report_dir, f"{prefix}-{dataset}.png"), title=f"{title}: {dataset}",
                      ylabel=ylabel, xlabel="kimg", colours=METHOD_COLOURS, bands=bands)


def diagnostic_lines(runs: dict, report_dir: str, datasets: list[str], methods: list[str]) -> list[str]:
    """The training statistics that say why (docs: scripts/compare/bench_diagnostics.py)."""
    titles = [title for title, _, _ in bench_diagnostics.COLUMNS]
    lines = ["## Why: training statistics at the end of training (mean ± std over seeds)", "",
             f"Mean of the last {bench_diagnostics.TAIL} ticks of each run's stats.jsonl, then mean ± std over the "
             "finished runs that have them (runs trained before the statistic existed, or whose directory was not "
             "kept, have none). r_t = E[sign D(real)] (ADA steers it to 0.6; higher = D separates the training set "
             "more); K = negatives in play; log(1+K) = the InfoNCE loss of a head that cannot tell the positive "
             "from the negatives; top-1 = share of queries whose positive beats every negative.", "",
             "| Dataset | Method | Runs | " + " | ".join(titles) + " |", "|---|---|---|" + "---|" * len(titles)]
    for dataset in datasets:
        for method in methods:
            count, summaries = bench_diagnostics.method_summary(runs, dataset, method)
            if not count:
                continue
            cells = [_mean_std(summaries[name], digits=digits) for _, name, digits in bench_diagnostics.COLUMNS]
            lines.append(f"| {dataset} | {method} | {count} | " + " | ".join(cells) + " |")
    lines.append("")
    for dataset in datasets:
        for prefix, _, title, _ in DIAGNOSTIC_PLOTS:
            if os.path.isfile(os.path.join(report_dir, f"{prefix}-{dataset}.png")):
                lines += [f"![{title}, {dataset}]({prefix}-{dataset}.png)", ""]
    return lines


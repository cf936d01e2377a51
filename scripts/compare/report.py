"""Reports of one comparison: results.md (table, FID at every snapshot, settings, commands) and fid_vs_kimg.png."""

from __future__ import annotations

import math
import os
from typing import Optional

from scripts.compare.presets import Settings, format_number, short_path
from scripts.compare.state import device_description, now
from dnnlib.util import atomic_write, format_time
from scripts.line_plot import draw_plot

METHOD_COLOURS = {"ada": (90, 90, 90), "adalinear": (31, 119, 180), "insgen": (44, 160, 44),
                  "fakeclr": (214, 39, 40), "contragan": (148, 103, 189),
                  "fakeclr-forget-code": (255, 127, 14), "fakeclr-query-indep": (227, 119, 194),
                  "fakeclr-queue-fixed32": (140, 86, 75), "fakeclr-lambda-0.3": (188, 189, 34),
                  "fakeclr-lambda-3": (23, 190, 207), "fakeclr-noise-0.3": (127, 127, 127),
                  "noaug": (0, 0, 0), "ada-kimg100": (140, 140, 140)}


def train_time(record: dict) -> str:
    """Wall time of train.py; unknown when the harness was killed after training finished."""
    seconds = record.get("train_seconds", 0.0)
    return format_time(seconds) if seconds > 0 else "unknown"


def fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _improvement(baseline: Optional[float], value: Optional[float]) -> str:
    if baseline is None or value is None or not (math.isfinite(baseline) and math.isfinite(value)) or baseline == 0:
        return "n/a"
    return f"{100.0 * (baseline - value) / baseline:+.1f} %"


def report_methods(settings: Settings, state: dict) -> list[str]:
    return [m for m in settings.methods if m in state["methods"] and state["methods"][m].get("curve")]


def score_labels(fid_name: str) -> tuple[str, str]:
    """Column words for the scores: FID/KID, or colour-FID/colour-KID for `--evaluator=colour` (not FID)."""
    prefix = fid_name[: fid_name.lower().find("fid")] if "fid" in fid_name.lower() else ""
    return f"{prefix}FID", f"{prefix}KID"


def write_markdown(settings: Settings, state: dict, path: str) -> None:
    fid_name, kid_name = state.get("metric_names", ["fid", "kid"])
    F, K = score_labels(fid_name)
    methods = report_methods(settings, state)
    base = state["methods"].get(settings.baseline, {}) if settings.baseline in methods else {}
    base_final = (base.get("final") or {}).get("fid")
    base_best = (base.get("best") or {}).get("fid")
    lines = [
        f"# Method comparison on {settings.dataset_name} ({settings.preset} preset)",
        "",
        f"Measured by `scripts/compare_methods.py` on {state.get('updated', now())[:10]} "
        f"(device: {state.get('device', device_description())}).",
        f"Scores: `{fid_name}` / `{kid_name}`: {settings.num_gen} generated images against the full training set "
        f"({settings.dataset_size} images{', with x-flips' if settings.mirror else ''}"
        f"{'' if settings.eval_data is None else '; real set ' + short_path(settings.eval_data)}); lower is better. "
        + (f"{F} is the FID formula on 4x4 average colours, a pipeline check, not FID." if F != "FID" else
           "FID with fewer than 50k fakes is biased upwards: compare methods with each other, not with papers."
           if settings.num_gen < 50000 else "Same protocol as the papers' tables."),
        "",
        f"| Method | kimg | Final {F} | Best {F} (kimg) | Final {K} ×10³ | Final {F} vs {settings.baseline} "
        f"| Best {F} vs {settings.baseline} | Train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        r = state["methods"][method]
        final, best = r.get("final") or {}, r.get("best") or {}
        kid = final.get("kid")
        same = method == settings.baseline
        lines.append(
            f"| {method} | {format_number(r.get('kimg', 0))} | {fmt(final.get('fid'))} | {fmt(best.get('fid'))} "
            f"({format_number(best.get('kimg', 0))}) | {fmt(None if kid is None else kid * 1000)} "
            f"| {'—' if same else _improvement(base_final, final.get('fid'))} "
            f"| {'—' if same else _improvement(base_best, best.get('fid'))} | {train_time(r)} |")
    lines += ["", f"Improvement vs {settings.baseline} = ({F}_{settings.baseline} − {F}_method) / {F}_{settings.baseline}; "
              f"positive = better (lower {F}).", ""]
    kimgs = sorted({p["kimg"] for m in methods for p in state["methods"][m]["curve"]})
    if kimgs:
        lines += [f"## {F} at every snapshot", "", "| kimg | " + " | ".join(methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for kimg in kimgs:
            cells = []
            for m in methods:
                point = next((p for p in state["methods"][m]["curve"] if p["kimg"] == kimg), None)
                cells.append(fmt(point["fid"]) if point else "")
            lines.append(f"| {format_number(kimg)} | " + " | ".join(cells) + " |")
        lines += ["", f"![{F} vs kimg](fid_vs_kimg.png)", ""]
    lines += ["## Settings", "",
              f"- Dataset: `{short_path(settings.data)}` ({settings.dataset_size} images, {settings.dataset_resolution} px)",
              f"- Training: `--cfg={settings.cfg}`"
              f"{'' if settings.batch is None else f' --batch={settings.batch}'} --mirror={settings.mirror} "
              f"--kimg={format_number(settings.kimg)}"
              f"{'' if settings.stop_kimg is None else f' --stop-kimg={format_number(settings.stop_kimg)}'}"
              f" --tick={format_number(settings.tick)} --snap={settings.snap} "
              f"--seed={settings.seed}{''.join(' ' + a for a in settings.train_args)}"
              + (f" ({settings.kimg_note})" if settings.kimg_note else ""),
              f"- Scores: {settings.num_gen} fakes, latent seed {settings.eval_seed}, evaluator `{state.get('evaluator')}`",
              ""]
    if state.get("harness_command"):
        lines += ["## Commands", "", "Harness (rerun it to resume or extend):", "", "```bash",
                  state["harness_command"], "```", ""]
    else:
        lines += ["## Commands", ""]
    for method in methods:
        r = state["methods"][method]
        lines += [f"`{method}` ({', '.join(r.get('run_dirs', [])) or 'no run directory'}):", "", "```bash",
                  *r.get("commands", []), "```", ""]
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def write_reports(settings: Settings, state: dict) -> None:
    methods = report_methods(settings, state)
    fid_name = state.get("metric_names", ["FID"])[0]
    series = {m: [(p["kimg"], p["fid"]) for p in state["methods"][m]["curve"]] for m in methods}
    draw_plot(series, os.path.join(settings.outdir, "fid_vs_kimg.png"),
              title=f"{fid_name} vs kimg: {settings.dataset_name}, {settings.preset} preset", ylabel=fid_name,
              xlabel="kimg (thousands of real images shown to D)", colours=METHOD_COLOURS)
    write_markdown(settings, state, os.path.join(settings.outdir, "results.md"))

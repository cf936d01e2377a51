"""Run the latent-continuity measurements for several networks and write the report files.

DIR/report.json (all numbers, per network), DIR/report.md (the numbers side by side, best per column in bold,
lower is better everywhere), DIR/interpolation.png and DIR/inversion.png (metrics.continuity_figures).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import torch

from dnnlib import util
from metrics.continuity_figures import InterpolationRow, interpolation_figure, inversion_figure, save_figure
from metrics.latent_continuity import ContinuityOptions, NetworkResult, evaluate_network, load_real_images
from metrics.vgg16 import VGG16

FILES = ("report.json", "report.md", "interpolation.png", "inversion.png")


def run_report(networks: list[tuple[str, str, Any]], data: str, outdir: str, opts: ContinuityOptions, vgg: VGG16,
               device: torch.device) -> list[NetworkResult]:
    """networks: (label, pickle path, G) triples, measured on the same latents and real images."""
    targets = load_real_images(data, opts.invert, opts.seed) if opts.invert > 0 else None
    results = [evaluate_network(G, label, path, data, targets, vgg, opts, device) for label, path, G in networks]
    os.makedirs(outdir, exist_ok=True)
    write_json(results, data, opts, os.path.join(outdir, "report.json"))
    write_markdown(results, data, opts, os.path.join(outdir, "report.md"))
    rows = [InterpolationRow(r.label, r.frames, r.frame_diffs) for r in results]
    save_figure(interpolation_figure(rows, opts.threshold), os.path.join(outdir, "interpolation.png"))
    if targets is not None:
        projections = {r.label: r.projections.float() / 255 for r in results}
        save_figure(inversion_figure(targets.float() / 255, projections), os.path.join(outdir, "inversion.png"))
    return results


def write_json(results: list[NetworkResult], data: str, opts: ContinuityOptions, path: str) -> None:
    report = {"data": data, "options": asdict(opts), "networks": [r.to_json() for r in results]}
    with util.atomic_write(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


# ----------------------------------------------------------------------------
# Markdown.

def _columns(opts: ContinuityOptions) -> list[tuple[str, Any]]:
    """(header, value getter) pairs; a getter returns (number used for ranking, text) or None."""
    def smooth(space: str, key: str, fmt: str):
        return lambda r: (r.smoothness[space][key], format(r.smoothness[space][key], fmt))

    def with_std(section: str, space: str, fmt: str):
        def get(r: NetworkResult):
            entry = getattr(r, section).get(space)
            return None if entry is None else (entry["mean"], f"{entry['mean']:{fmt}} ± {entry['std']:{fmt}}")
        return get

    t = f"{opts.threshold:g}"
    columns = []
    for space in ("z", "w"):
        s = space.upper()
        columns += [(f"{s} step diff mean", smooth(space, "mean", ".4f")),
                    (f"{s} step diff max", smooth(space, "max", ".4f")),
                    (f"{s} steps > {t}", smooth(space, "jump_fraction", ".1%"))]
    columns += [("PPL Z", with_std("ppl", "z", ".4g")), ("PPL W", with_std("ppl", "w", ".4g")),
                ("inversion LPIPS", with_std("inversion", "lpips", ".4f")),
                ("inversion MSE", with_std("inversion", "mse", ".5f"))]
    return columns


def markdown_table(results: list[NetworkResult], opts: ContinuityOptions) -> list[str]:
    columns = [(h, g) for h, g in _columns(opts) if all(g(r) is not None for r in results)]
    cells = [[g(r) for _, g in columns] for r in results]
    best = [min(row[j][0] for row in cells) for j in range(len(columns))]
    lines = ["| network | " + " | ".join(h for h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r, row in zip(results, cells):
        bold = [len(results) > 1 and value == best[j] for j, (value, _) in enumerate(row)]
        texts = [f"**{text}**" if b else text for b, (_, text) in zip(bold, row)]
        lines.append(f"| {r.label} | " + " | ".join(texts) + " |")
    return lines


def write_markdown(results: list[NetworkResult], data: str, opts: ContinuityOptions, path: str) -> None:
    first = results[0]
    lines = [
        "# Latent continuity", "",
        f"Data: `{data}`. Lower is better in every column; the best value is in bold.", "",
        *markdown_table(results, opts), "",
        f"- Interpolation: {opts.pairs} random pairs (seed {opts.seed}), {opts.steps} steps, slerp in Z, lerp in W; "
        f"a step's value is the mean |frame[i + 1] - frame[i]| with pixels in [0, 1]; steps above {opts.threshold:g} "
        "are jumps (FakeCLR Fig. 1).",
        f"- PPL: {opts.ppl_samples} samples per space, full paths, epsilon 1e-4, "
        f"{'face crop' if opts.ppl_crop else 'no crop'} (as ppl_zfull / ppl_wfull); mean ± std after the 1 %/99 % "
        "trimming (FakeCLR Table 2)." if first.ppl else "- PPL: skipped (--ppl-samples=0).",
        f"- Inversion: {opts.invert} real images, {opts.proj_steps} projector steps; LPIPS (VGG16) and MSE (pixels in "
        "[0, 1]) between each target and its projection, mean ± std." if first.inversion else
        "- Inversion: skipped (--invert=0).", "",
        "Networks:", "", *[f"- {r.label}: `{r.network}`" for r in results], "",
        "![interpolation](interpolation.png)", "",
    ]
    if first.inversion:
        lines += ["![inversion](inversion.png)", ""]
    with util.atomic_write(path, "w") as f:
        f.write("\n".join(lines))

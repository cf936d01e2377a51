"""The suite's report: gpu_report.json (everything) and gpu_report.md (tables ready to paste into
docs/performance.md): machine, versions, every step's status and command, then the figures."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
from typing import Any, Optional, Sequence

from benchmarks.suite.runner import StepOutcome
from dnnlib.util import atomic_write

REPORT_VERSION = 1


def collect_environment() -> dict:
    """GPU, driver, torch / CUDA / cuDNN / nvcc versions, CPU count (what a figure depends on)."""
    import torch

    env: dict[str, Any] = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                               cpus=os.cpu_count(), gpu=None, gpu_count=0, driver=None, nvcc=None, cudnn=None)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                   gpu_memory_gb=round(props.total_memory / 2**30, 1), compute_capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version())
        env["driver"] = _first_line(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    env["nvcc"] = _first_line(["nvcc", "--version"], last=True)
    return env


def _first_line(argv: list[str], last: bool = False) -> Optional[str]:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[-1] if last else out[0]).strip() if out else None


def build_report(environment: dict, budget_s: float, started_at: str, outcomes: Sequence[StepOutcome],
                 command: str) -> dict:
    return dict(version=REPORT_VERSION, date=started_at, command=command, budget_s=budget_s,
                environment=environment, total_s=round(sum(o.seconds for o in outcomes), 1),
                steps=[o.to_dict() for o in outcomes])


def write_report(report: dict, out_dir: str) -> tuple[str, str]:
    """gpu_report.json and gpu_report.md in `out_dir`, each replaced atomically."""
    os.makedirs(out_dir, exist_ok=True)
    json_path, md_path = os.path.join(out_dir, "gpu_report.json"), os.path.join(out_dir, "gpu_report.md")
    with atomic_write(json_path, "w") as f:
        json.dump(report, f, indent=2)
    with atomic_write(md_path, "w") as f:
        f.write(markdown(report))
    return json_path, md_path


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------
# Markdown.

def markdown(report: dict) -> str:
    env = report["environment"]
    steps = {s["name"]: s for s in report["steps"]}
    lines = [f"### Measured with the GPU suite: {env.get('gpu') or 'no GPU'} ({report['date']})", "",
             f"{env.get('gpu') or 'no GPU'}"
             + (f" ({env.get('gpu_memory_gb')} GB, compute {env.get('compute_capability')}, driver {env.get('driver')})"
                if env.get("gpu") else "")
             + f"; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env.get('cudnn')}, nvcc {env.get('nvcc')}, "
               f"{env['cpus']} CPUs. Command: `{report['command']}` (budget {report['budget_s']:.0f} s, "
               f"steps took {report['total_s']:.0f} s).", ""]
    lines += _steps_table(report["steps"])
    for title, render in _SECTIONS:
        section = render(steps)
        if section:
            lines += ["", f"**{title}**", "", *section]
    return "\n".join(lines) + "\n"


def _steps_table(steps: Sequence[dict]) -> list[str]:
    rows = ["| step | status | s (estimate) | command |", "|---|---|---|---|"]
    for s in steps:
        status = s["status"] + (f": {_cell(s['reason'])}" if s.get("reason") else "")
        rows.append(f"| {s['name']} | {status} | {s['seconds']:.0f} ({s['estimate_s']:.0f}) | `{s['command']}` |")
    return rows


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _results(steps: dict, name: str) -> Any:
    step = steps.get(name)
    return None if step is None or step["status"] == "skipped" else step.get("results")


def _build_section(steps: dict) -> list[str]:
    ops = _results(steps, "build_plugins") or []
    rows = ["| plugin | build s | self-check | worst error / tolerance | check ms |", "|---|---|---|---|---|"]
    for r in ops:
        check = r.get("self_check") or {}
        verdict = r["error"] or ("passed" if check.get("passed") else f"FAILED: {check.get('summary', '')}")
        rows.append(f"| {r['op']} | {_fmt(r['build_s'])} | {_cell(verdict)} "
                    f"| {_fmt(check.get('worst_error_ratio'), 3)} | {_fmt(check.get('milliseconds'))} |")
    return rows if ops else []


def _tests_section(steps: dict) -> list[str]:
    results = _results(steps, "cuda_tests")
    if not results:
        return []
    counts = ", ".join(f"{n} {kind}" for kind, n in results["counts"].items())
    failed = "; failed: " + ", ".join(f"`{t}`" for t in results["failed"]) if results["failed"] else ""
    return [f"`cuda`-marked tests: {counts}{failed}."]


def _ops_section(steps: dict) -> list[str]:
    ops = [r for name in ("ops_fp32", "ops_fp16") for r in (_results(steps, name) or [])]
    rows = ["| op | dtype | shape | fused ms | reference ms | speed-up | fwd error | grad error | agrees |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in ops:
        rows.append(f"| {r['op']} | {r['dtype']} | {'x'.join(map(str, r['shape']))} | {_fmt(r.get('fused_ms'), 2)} "
                    f"| {_fmt(r.get('ref_ms'), 2)} | {r['speedup_fused_vs_ref']:.2f} | {r['fwd_error']:.1e} "
                    f"| {r['grad_error']:.1e} | {'yes' if r['agrees'] else 'NO'} |")
    return rows if ops else []


_TRAIN_STEPS = ("train_methods", "train_ref_ops", "train_switches", "auto256", "train_compile")


def train_configs(steps: dict) -> list[dict]:
    return [c for name in _TRAIN_STEPS for c in ((_results(steps, name) or {}).get("configs") or [])]


def _train_section(steps: dict) -> list[str]:
    configs = train_configs(steps)
    rows = ["| preset | batch | method | ops | variant | img/s | sec/kimg | peak GB |",
            "|---|---|---|---|---|---|---|---|"]
    for c in configs:
        rows.append(f"| {c['preset']} | {c['batch']} | {c['method']} | {c['ops']} | {c['variant']} "
                    f"| {_fmt(c['img_per_s'])} | {_fmt(c['sec_per_kimg'], 2)} | {_fmt(c.get('peak_gpu_mem_gb'), 2)} |")
    return rows if configs else []


def ratios(configs: Sequence[dict]) -> list[tuple[str, float]]:
    """sec/kimg ratios across the suite's training steps (same machine, same run of the suite):
    FakeCLR/ADA, reference/fused ops, and every switch against the plain (FP16 default) config."""
    def base_of(config: dict, **change) -> Optional[dict]:
        key = {name: config[name] for name in ("preset", "batch", "method", "ops", "variant")}
        key.update(change)
        return next((c for c in configs if all(c.get(k) == v for k, v in key.items())), None)

    out = []
    for c in configs:
        comparisons = []
        if c["method"] != "ada":
            comparisons.append((f"{c['method']}/ada ({c['ops']}, {c['variant']})", dict(method="ada")))
        if c["ops"] == "ref":
            comparisons.append((f"{c['method']} reference/fused ops ({c['variant']})", dict(ops="cuda")))
        if c["variant"] != "plain":
            comparisons.append((f"{c['method']} {c['variant']}/plain ({c['ops']})", dict(variant="plain")))
        for label, change in comparisons:
            base = base_of(c, **change)
            if base is not None:
                out.append((f"{c['preset']} {label}", c["sec_per_kimg"] / base["sec_per_kimg"]))
    return out


def _ratio_section(steps: dict) -> list[str]:
    rows = [f"* {label}: **{value:.3f}**" for label, value in ratios(train_configs(steps))]
    return ["sec/kimg ratios (> 1 = slower than the base):", "", *rows] if rows else []


def _inception_section(steps: dict) -> list[str]:
    cases = _results(steps, "inception") or []
    return [f"Inception-v3 features: **{c['img_per_s']:.0f} img/s** at batch {c['batch']} ({c['res']} px inputs)"
            for c in cases]


def _train64_section(steps: dict) -> list[str]:
    r = _results(steps, "train64_fakeclr")
    if not r:
        return []
    finite = "all finite" if not r.get("nonfinite_losses") else f"NON-FINITE: {', '.join(r['nonfinite_losses'])}"
    losses = ", ".join(f"{k.removeprefix('Loss/')} {v:.3g}" for k, v in r.get("final_losses", {}).items())
    return [f"64 px FakeCLR training: {r.get('ticks')} ticks to {_fmt(r.get('kimg'))} kimg, "
            f"{_fmt(r.get('sec_per_kimg'), 2)} sec/kimg, peak {_fmt(r.get('peak_gpu_mem_gb'), 2)} GB; losses {finite}; non-finite gradient elements "
            f"{r.get('nonfinite_gradient_elements', 0):.0f}; final: {losses}."]


_SECTIONS = (("Plugins", _build_section), ("Tests", _tests_section), ("Fused vs reference ops (fwd+bwd)", _ops_section),
             ("Training speed", _train_section), ("Ratios", _ratio_section), ("Metrics", _inception_section),
             ("Short real training", _train64_section))

"""What the GPU suite runs, in priority order, and how long each step should take.

Every step is one command (a subprocess: a crashing kernel or a hang costs that step only) and a
parser for its output (benchmarks/suite/parsers.py). The estimates are for one H100/H200-class GPU
with 16 CPU cores, the plugins built once by the first step (every later step reuses the build
through FAKECLR_PLUGIN_DIR); they decide what fits the budget before a step starts, the real
elapsed time decides after.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

NEEDS_PLUGINS = ("build_plugins",)  # the fused path: pointless (or an error under --ops=cuda) without the plugins
TRAIN_BENCH = ("benchmarks/train_bench.py", "--steps=16", "--warmup=2", "--cache-dir={work}/train-bench")
PAPER256 = ("--presets=paper256", "--batch=64")


@dataclass(frozen=True)
class Step:
    name: str
    title: str  # what it measures, for the report
    estimate_s: float
    argv: tuple[str, ...]  # after "python"; {work} is the suite's work directory (builds, datasets, runs)
    parser: str  # a key of parsers.PARSERS
    requires: tuple[str, ...] = ()  # steps that must have succeeded when they ran in the same suite

    def command(self, python: str = "python", work_dir: str = "gpu_report/work") -> list[str]:
        return [python, *(arg.format(work=work_dir) for arg in self.argv)]

    def command_line(self, work_dir: str = "gpu_report/work") -> str:
        """The command as a user would type it from the repository root (the report and --dry-run show this)."""
        return shlex.join(self.command("python", work_dir))


STEPS: tuple[Step, ...] = (
    Step("build_plugins", "Build the CUDA plugins (build time) and run their self-check", 90,
         ("benchmarks/suite/probes.py", "build"), "build"),
    Step("cuda_tests", "The cuda-marked tests: fused ops vs reference (fp32/fp16, 3 orders), networks on CUDA", 60,
         ("-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_ops_cuda.py",
          "tests/test_networks.py"),
         "pytest", NEEDS_PLUGINS),
    Step("ops_fp32", "Fused vs reference ops on network shapes, fp32: agreement and fwd+bwd speed ratio", 30,
         ("benchmarks/ops_bench.py", "--dtype=float32"), "ops", NEEDS_PLUGINS),
    Step("ops_fp16", "Fused vs reference ops on network shapes, fp16: agreement and fwd+bwd speed ratio", 30,
         ("benchmarks/ops_bench.py", "--dtype=float16"), "ops", NEEDS_PLUGINS),
    Step("train_methods", "paper256, batch 64: ADA and FakeCLR, fused ops, FP16 default (FakeCLR/ADA ratio)", 75,
         (*TRAIN_BENCH, *PAPER256, "--methods=ada,fakeclr", "--ops=cuda", "--variants=plain"), "train", NEEDS_PLUGINS),
    Step("train_ref_ops", "paper256, batch 64: ADA with the reference ops (fused/reference ratio)", 45,
         (*TRAIN_BENCH, *PAPER256, "--methods=ada", "--ops=ref", "--variants=plain", "--no-breakdown"), "train"),
    Step("train_switches", "paper256, batch 64: ADA with channels-last, bf16, FP32 (vs the FP16 default)", 80,
         (*TRAIN_BENCH, *PAPER256, "--methods=ada", "--ops=cuda", "--variants=channels_last,bf16,fp32",
          "--no-breakdown"), "train", NEEDS_PLUGINS),
    Step("auto256", "The auto config at 256 px (batch 16 on one GPU; upstream V100: 21.6-24.2 sec/kimg)", 40,
         (*TRAIN_BENCH, "--presets=auto", "--methods=ada", "--ops=cuda", "--variants=plain", "--no-breakdown"),
         "train", NEEDS_PLUGINS),
    Step("inception", "Inception-v3 feature throughput at batch 256 (64 px inputs resized to 299)", 40,
         ("benchmarks/metrics_bench.py", "--batch=256", "--cases=inception_features"), "metrics"),
    Step("train64_fakeclr", "A real 64 px FakeCLR training, 200 steps of batch 32: losses stay finite", 90,
         ("train.py", "--outdir={work}/train64", "--data=datasets/emoji-smileys", "--cfg=auto", "--method=fakeclr",
          "--batch=32", "--kimg=6.4", "--tick=1.6", "--snap=1000", "--metrics=none"), "training_run"),
    Step("train_compile", "paper256, batch 64: ADA with torch.compile (inductor, compiling in the warm-up)", 240,
         (*TRAIN_BENCH, *PAPER256, "--methods=ada", "--ops=cuda", "--variants=compile", "--no-breakdown"),
         "train", NEEDS_PLUGINS),
)


class PlanError(ValueError):
    pass


def select_steps(names: Optional[str] = None, skip: Optional[str] = None,
                 steps: Sequence[Step] = STEPS) -> list[Step]:
    """The steps named in `names` (comma-separated, in that order; default all), minus `skip`."""
    by_name = {step.name: step for step in steps}
    chosen = [s.strip() for s in names.split(",") if s.strip()] if names else list(by_name)
    skipped = [s.strip() for s in skip.split(",") if s.strip()] if skip else []
    unknown = [name for name in chosen + skipped if name not in by_name]
    if unknown:
        raise PlanError(f"unknown step {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [by_name[name] for name in chosen if name not in skipped]


@dataclass(frozen=True)
class PlannedStep:
    step: Step
    starts_at_s: float  # estimated time into the suite when it starts
    fits: bool


def plan(steps: Sequence[Step], budget_s: float) -> list[PlannedStep]:
    """The steps that fit the budget on their estimates, in order; a step that does not fit is
    passed over and the next, shorter ones still get their chance (as the runner does)."""
    planned, used = [], 0.0
    for step in steps:
        fits = used + step.estimate_s <= budget_s
        planned.append(PlannedStep(step, used, fits))
        if fits:
            used += step.estimate_s
    return planned


def step_timeout(step: Step, left_s: float) -> float:
    """How long a started step may run: what is left of the budget, and at most 3x its estimate
    (plus a minute), beyond which it is taken to hang."""
    return max(0.0, min(left_s, max(3 * step.estimate_s, step.estimate_s + 60)))


def format_plan(planned: Sequence[PlannedStep], budget_s: float, work_dir: str) -> str:
    """The --dry-run table."""
    lines = [f"GPU suite plan, budget {budget_s:.0f} s (estimates for one H100-class GPU):", ""]
    for i, item in enumerate(planned, 1):
        verdict = f"at {item.starts_at_s:4.0f} s" if item.fits else "SKIPPED: does not fit the budget"
        lines.append(f"{i:2d}. {item.step.name:<16} ~{item.step.estimate_s:4.0f} s  {verdict}")
        lines.append(f"      {item.step.title}")
        lines.append(f"      $ {item.step.command_line(work_dir)}")
    total = sum(p.step.estimate_s for p in planned if p.fits)
    skipped = [p.step.name for p in planned if not p.fits]
    lines += ["", f"Planned: {total:.0f} s of {budget_s:.0f} s; skipped: {', '.join(skipped) or 'none'}."]
    return "\n".join(lines)

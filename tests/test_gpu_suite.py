"""benchmarks/gpu_suite.py on the CPU: the plan and its budget cut, the runner (with injected fake
step runs and a fake clock), the output parsers and the report (JSON + markdown)."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import torch
from click.testing import CliRunner

from benchmarks import gpu_suite
from benchmarks.suite import parsers, report
from benchmarks.suite.plan import STEPS, PlanError, Step, plan, select_steps, step_timeout
from benchmarks.suite.runner import Execution, SuiteRunner

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _step(name: str, estimate_s: float, parser: str = "metrics") -> Step:
    return Step(name, f"title of {name}", estimate_s, ("benchmarks/metrics_bench.py", f"--{name}"), parser)


# ----------------------------------------------------------------------------
# Plan.

def test_budget_cut_passes_over_what_does_not_fit_and_keeps_shorter_later_steps():
    planned = plan([_step("a", 100), _step("b", 300), _step("c", 50), _step("d", 60)], budget_s=200)
    assert [(p.step.name, p.fits, p.starts_at_s) for p in planned] == [
        ("a", True, 0), ("b", False, 100), ("c", True, 100), ("d", False, 150)]


def test_the_default_plan_puts_builds_and_tests_first_and_names_what_480_s_leave_out():
    names = [p.step.name for p in plan(STEPS, 480) if not p.fits]
    assert [s.name for s in STEPS[:4]] == ["build_plugins", "cuda_tests", "ops_fp32", "ops_fp16"]
    assert names == ["inception", "train64_fakeclr", "train_compile"]
    assert all(p.fits for p in plan(STEPS, sum(s.estimate_s for s in STEPS)))
    for step in STEPS:  # every command names a script of this repository and a known parser
        script = step.argv[0] if step.argv[0] != "-m" else step.argv[-1]
        assert (REPO_ROOT / script).is_file(), step.name
        assert step.parser in parsers.PARSERS


def test_step_selection_keeps_the_given_order_and_rejects_unknown_names():
    assert [s.name for s in select_steps("ops_fp16,build_plugins")] == ["ops_fp16", "build_plugins"]
    assert "cuda_tests" not in [s.name for s in select_steps(skip="cuda_tests")]
    with pytest.raises(PlanError, match="unknown step opz; choose from build_plugins"):
        select_steps("opz")


def test_a_started_step_may_use_the_rest_of_the_budget_but_not_hang_forever():
    assert step_timeout(_step("a", 30), left_s=400) == 90  # 3x the estimate
    assert step_timeout(_step("a", 10), left_s=400) == 70  # at least a minute more than the estimate
    assert step_timeout(_step("a", 100), left_s=120) == 120


def test_dry_run_prints_the_plan_with_estimates_and_commands():
    result = CliRunner().invoke(gpu_suite.main, ["--dry-run", "--budget-s=200", "--out=rep"])  # work: rep/work
    assert result.exit_code == 0, result.output
    assert " 1. build_plugins    ~  90 s  at    0 s" in result.output
    assert " 4. ops_fp16         ~  30 s  SKIPPED: does not fit the budget" in result.output
    assert "$ python benchmarks/train_bench.py --steps=16 --warmup=2 --cache-dir=rep/work/train-bench" in result.output
    assert "Planned: 180 s of 200 s; skipped: ops_fp16, train_methods," in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_a_real_run_needs_a_gpu(tmp_path):
    result = CliRunner().invoke(gpu_suite.main, [f"--out={tmp_path}"])
    assert result.exit_code == 1 and "Error: gpu_suite: no CUDA GPU is visible to torch" in result.output
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------
# Runner (fake executions, fake clock).

class FakeMachine:
    """Plays the executor and the clock: each command 'takes' its scripted seconds."""

    def __init__(self, script: dict[str, Execution]):
        self.script, self.now, self.calls = script, 0.0, []

    def clock(self) -> float:
        return self.now

    def execute(self, argv, env, timeout_s, log_path) -> Execution:
        name = argv[-1].lstrip("-")
        self.calls.append((name, timeout_s, env.get("FAKECLR_PLUGIN_DIR")))
        execution = self.script[name]
        self.now += execution.seconds
        return execution


METRICS_LINE = json.dumps(dict(benchmark="metrics_detectors", case="inception_features", device="H200", batch=256,
                               res=64, iters=20, img_per_s=5321.4))


def test_runner_records_ok_failed_timed_out_and_skipped_steps_and_reports_after_each(tmp_path):
    machine = FakeMachine({
        "ok": Execution(0, f"warming up\n{METRICS_LINE}\n", 20),
        "crash": Execution(1, "Traceback ...\nRuntimeError: CUDA error: an illegal memory access was encountered\n", 5),
        "silent": Execution(0, "nothing useful\n", 5),
        "hang": Execution(None, "", 75),
        "late": Execution(0, METRICS_LINE, 1),
    })
    updates = []
    runner = SuiteRunner(out_dir=str(tmp_path), work_dir=str(tmp_path / "work"), budget_s=130, executor=machine.execute, clock=machine.clock,
                         on_update=lambda outcomes: updates.append([o.status for o in outcomes]),
                         env=dict(gpu_suite.step_environment("/work"), FAKECLR_PLUGIN_DIR="/plugins"))
    steps = [_step("ok", 30), _step("crash", 10), _step("silent", 10), _step("hang", 25), _step("late", 40)]
    outcomes = runner.run(steps)

    assert [o.status for o in outcomes] == ["ok", "failed", "failed", "timed_out", "skipped"]
    assert updates[-1] == [o.status for o in outcomes] and len(updates) == 5
    ok, crash, silent, hang, late = outcomes
    assert ok.results[0]["img_per_s"] == 5321.4 and ok.seconds == 20 and ok.reason is None
    assert crash.reason == "exit code 1: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert silent.reason == "metrics_bench printed no result"
    assert hang.reason.startswith("killed after 75 s")
    assert late.reason == "does not fit the budget: needs ~40 s, 25 s left"  # 130 - 20 - 5 - 5 - 75
    # Timeouts: 3x the estimate while the budget lasts, then what is left of it; every step gets the plugin dir.
    assert [(name, timeout) for name, timeout, _ in machine.calls] == [("ok", 90), ("crash", 70), ("silent", 70),
                                                                      ("hang", 85)]
    assert {plugin_dir for _, _, plugin_dir in machine.calls} == {"/plugins"}


def test_the_real_executor_runs_a_command_and_kills_it_at_its_deadline(tmp_path):
    from benchmarks.suite.runner import run_subprocess

    done = run_subprocess(["python", "-c", "print('hello')"], dict(os.environ), 60, str(tmp_path / "logs" / "a.log"))
    assert done.returncode == 0 and "hello" in done.output
    assert (tmp_path / "logs" / "a.log").read_text().startswith("$ python -c")
    killed = run_subprocess(["python", "-c", "import time; time.sleep(30)"], dict(os.environ), 1, str(tmp_path / "b.log"))
    assert killed.returncode is None and killed.seconds < 25  # killed at its 1 s deadline, not after the 30 s sleep


# ----------------------------------------------------------------------------
# Parsers.

def test_pytest_parser_counts_and_names_failures():
    output = "..F.s\nFAILED tests/test_ops_cuda.py::test_bias_act_cuda_matches_reference[...] - assert 0.1 <= 0.02\n" \
             "1 failed, 3 passed, 1 skipped in 12.3s\n"
    results, problem = parsers.parse_pytest(output, "")
    assert results["counts"] == {"failed": 1, "passed": 3, "skipped": 1}
    assert problem == "1 failed: tests/test_ops_cuda.py::test_bias_act_cuda_matches_reference[...]"
    assert parsers.parse_pytest("58 passed in 20.1s\n", "") == ({"counts": {"passed": 58}, "failed": []}, None)
    assert parsers.parse_pytest("ImportError\n", "")[1] == "no test passed"


def test_steps_run_without_a_leftover_ops_override_and_share_one_plugin_build(monkeypatch):
    monkeypatch.setenv("FAKECLR_OPS", "ref")
    monkeypatch.delenv("FAKECLR_PLUGIN_DIR", raising=False)
    env = gpu_suite.step_environment("/w")
    assert "FAKECLR_OPS" not in env and env["FAKECLR_PLUGIN_DIR"] == os.path.join("/w", "plugins")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def _ops_line(agrees: bool = True, plugin_used: bool = True) -> str:
    return json.dumps(dict(op="bias_act lrelu+clamp", shape=[64, 512, 32, 32], device="cuda", dtype="float16",
                           speedup_fused_vs_ref=3.1, fused_ms=1.2, ref_ms=3.72, fwd_error=1e-3 if agrees else 0.3,
                           grad_error=2e-3, tolerance=0.02, agrees=agrees, plugin_used=plugin_used))


def test_ops_parser_flags_disagreement_and_an_unused_plugin():
    assert parsers.parse_ops(_ops_line(), "")[1] is None
    assert parsers.parse_ops(_ops_line(agrees=False), "")[1] == \
        "bias_act lrelu+clamp float16: fwd 3.0e-01 / grad 2.0e-03 > 2e-02"
    assert "the plugin was not used" in parsers.parse_ops(_ops_line(plugin_used=False), "")[1]


def _write_stats(work_dir: pathlib.Path, d_losses: list[float]) -> None:
    run = work_dir / "train64" / "00000-emoji-smileys-auto1-fakeclr"
    run.mkdir(parents=True)
    ticks = [{"Loss/D/loss": {"num": 8, "mean": d, "std": 0.1}, "Loss/CL/fake_D": {"num": 8, "mean": 2.5, "std": 0.1},
              "Progress/kimg": {"num": 1, "mean": 1.6 * i, "std": 0}, "Timing/sec_per_kimg": {"num": 1, "mean": 3.5, "std": 0},
              "Debug/nonfinite_grad/Dmain": {"num": 4, "mean": 0.5 * i, "std": 0}} for i, d in enumerate(d_losses)]
    (run / "stats.jsonl").write_text("\n".join(json.dumps(t) for t in ticks) + "\n")


def test_training_run_parser_demands_finite_losses(tmp_path):
    _write_stats(tmp_path / "good", [1.4, 1.2, 1.1])
    results, problem = parsers.parse_training_run("", str(tmp_path / "good"))
    assert problem is None and results["ticks"] == 3 and results["kimg"] == pytest.approx(3.2)
    assert results["final_losses"] == {"Loss/CL/fake_D": 2.5, "Loss/D/loss": 1.1}
    assert results["nonfinite_gradient_elements"] == pytest.approx(0 + 2 + 4)
    _write_stats(tmp_path / "bad", [1.4, float("nan"), 1.1])
    assert parsers.parse_training_run("", str(tmp_path / "bad"))[1] == "non-finite losses: Loss/D/loss"
    assert parsers.parse_training_run("", str(tmp_path / "none"))[1] == "the training wrote no stats.jsonl"


def test_build_parser_names_a_plugin_that_failed_to_build_or_its_self_check():
    good = dict(op="bias_act", error=None, build_s=41.0, usable=True,
                self_check=dict(passed=True, worst_error_ratio=0.02, milliseconds=4.1, summary=""))
    bad = dict(op="upfirdn2d", error="RuntimeError: nvcc fatal", build_s=3.0, usable=False)
    results, problem = parsers.parse_build("\n".join(json.dumps(r) for r in (good, bad)), "")
    assert [r["op"] for r in results] == ["bias_act", "upfirdn2d"] and problem == "upfirdn2d: RuntimeError: nvcc fatal"
    unchecked = dict(good, usable=False, self_check=None)
    assert parsers.parse_build(json.dumps(unchecked), "")[1] == "bias_act: no self-check ran (the plugin was not used)"
    wrong = dict(good, usable=False, self_check=dict(passed=False, summary="lrelu, float16 forward: error 1e-01"))
    assert parsers.parse_build(json.dumps(wrong), "")[1] == "bias_act: self-check failed: lrelu, float16 forward: error 1e-01"


# ----------------------------------------------------------------------------
# Report.

def _config(method: str, ops: str, variant: str, sec_per_kimg: float) -> dict:
    return dict(preset="paper256", batch=64, method=method, ops=ops, variant=variant, img_per_s=1000 / sec_per_kimg,
                sec_per_kimg=sec_per_kimg, peak_gpu_mem_gb=5.25)


def _train_outcome(name: str, configs: list[dict]) -> dict:
    return dict(name=name, title=name, status="ok", estimate_s=60, command=f"python benchmarks/train_bench.py --{name}",
                seconds=55.0, reason=None, results=dict(configs=configs, ratios=[]), log=f"logs/{name}.log")


def test_report_markdown_has_versions_commands_figures_and_cross_step_ratios(tmp_path):
    steps = [
        _train_outcome("train_methods", [_config("ada", "cuda", "plain", 8.0), _config("fakeclr", "cuda", "plain", 8.6)]),
        _train_outcome("train_ref_ops", [_config("ada", "ref", "plain", 20.0)]),
        _train_outcome("train_switches", [_config("ada", "cuda", "channels_last", 7.2)]),
        dict(name="inception", title="", status="skipped", estimate_s=40, command="python benchmarks/metrics_bench.py",
             seconds=0.0, reason="does not fit the budget: needs ~40 s, 12 s left", results=None, log=None),
    ]
    environment = dict(gpu="NVIDIA H200", gpu_memory_gb=139.8, compute_capability="9.0", driver="570.1", torch="2.14.1",
                       cuda="12.8", cudnn=90100, nvcc="Build cuda_12.8", cpus=16)
    data = dict(version=1, date="2026-12-02 07:00 UTC", command="python benchmarks/gpu_suite.py --budget-s=480",
                budget_s=480, environment=environment, total_s=165.0, steps=steps)
    json_path, md_path = report.write_report(data, str(tmp_path / "rep"))
    assert json.loads(pathlib.Path(json_path).read_text()) == data
    md = pathlib.Path(md_path).read_text()
    assert "NVIDIA H200 (139.8 GB, compute 9.0, driver 570.1); torch 2.14.1, CUDA 12.8" in md
    assert "Command: `python benchmarks/gpu_suite.py --budget-s=480`" in md
    assert "| inception | skipped: does not fit the budget: needs ~40 s, 12 s left | 0 (40) |" in md
    assert "| paper256 | 64 | fakeclr | cuda | plain | 116.3 | 8.60 | 5.25 |" in md
    assert "* paper256 fakeclr/ada (cuda, plain): **1.075**" in md
    assert "* paper256 ada reference/fused ops (plain): **2.500**" in md
    assert "* paper256 ada channels_last/plain (cuda): **0.900**" in md
    assert not list((tmp_path / "rep").glob("*.tmp*"))


def test_every_training_command_of_the_plan_is_accepted(tmp_path, monkeypatch):
    """The commands are only ever run on a GPU machine: at least their options must parse here."""
    import train
    from benchmarks import train_bench

    monkeypatch.chdir(REPO_ROOT)  # the commands are relative to the repository root
    for step in STEPS:
        argv = step.command("python", str(tmp_path))[1:]
        if argv[0] == "benchmarks/train_bench.py":
            ctx = train_bench.main.make_context("train_bench.py", argv[1:])
            assert ctx.params["presets"] in ("paper256", "auto") and ctx.params["ops_list"] in ("cuda", "ref"), step.name
            assert all(train_bench.variant_flags(v) is not None for v in ctx.params["variants"].split(","))
        elif argv[0] == "train.py":
            result = CliRunner().invoke(train.main, [*argv[1:], "--dry-run"])
            assert result.exit_code == 0, result.output
            assert '"batch_size": 32' in result.output and '"total_kimg": 6.4' in result.output


def test_steps_that_need_the_plugins_are_skipped_when_the_build_failed(tmp_path):
    build = Step("build_plugins", "", 90, ("benchmarks/suite/probes.py", "build"), "build")
    fused = Step("fused", "", 30, ("benchmarks/ops_bench.py", "--fused"), "ops", requires=("build_plugins",))
    reference = _step("reference", 30)
    failed_build = json.dumps(dict(op="bias_act", error="RuntimeError: no CUDA toolkit found (nvcc)", build_s=0.1,
                                   usable=False))
    machine = FakeMachine({"build": Execution(0, failed_build, 5), "reference": Execution(0, METRICS_LINE, 5),
                           "fused": Execution(0, _ops_line(), 5)})
    runner = SuiteRunner(out_dir=str(tmp_path), work_dir=str(tmp_path / "work"), budget_s=300, executor=machine.execute, clock=machine.clock)
    outcomes = runner.run([build, fused, reference])
    assert [o.status for o in outcomes] == ["failed", "skipped", "ok"]
    assert outcomes[1].reason == "needs build_plugins, which failed: bias_act: RuntimeError: no CUDA toolkit found (nvcc)"
    assert [name for name, _, _ in machine.calls] == ["build", "reference"]
    # Without the build in this suite (built by an earlier run), the fused step runs.
    assert runner.run([fused])[0].status == "ok" and machine.calls[-1][0] == "fused"


def test_an_unreadable_output_fails_its_step_only(tmp_path):
    garbled = json.dumps(dict(op="bias_act", shape=[1], speedup_fused_vs_ref=1.0))  # fields missing
    machine = FakeMachine({"garbled": Execution(0, garbled, 1), "ok": Execution(0, METRICS_LINE, 1)})
    runner = SuiteRunner(out_dir=str(tmp_path), work_dir=str(tmp_path), budget_s=100, executor=machine.execute,
                         clock=machine.clock)
    garbled_outcome, ok = runner.run([_step("garbled", 10, parser="ops"), _step("ok", 10)])
    assert garbled_outcome.status == "failed" and garbled_outcome.reason.startswith("could not read its output: KeyError")
    assert ok.status == "ok"

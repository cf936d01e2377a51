"""Run the planned steps within a time budget, one subprocess each.

Before a step starts, its estimate must fit in what is left of the budget, else it is skipped
(named, with the reason) and the next one is considered; a step whose prerequisite failed (the
fused-path steps when the plugins did not build) is skipped too, leaving its time to the others.
A started step may run until the budget is spent (or 3x its estimate, see plan.step_timeout); then it is killed and marked timed out.
After every step `on_update` gets all outcomes so far: the report on disk is always current,
even if the suite itself is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from benchmarks.suite import parsers
from benchmarks.suite.plan import Step, step_timeout


@dataclass
class Execution:
    """What running one command gave: returncode None means killed at its deadline."""
    returncode: Optional[int]
    output: str
    seconds: float


@dataclass
class StepOutcome:
    name: str
    title: str
    status: str  # ok, failed, timed_out, skipped
    estimate_s: float
    command: str
    seconds: float = 0.0
    reason: Optional[str] = None
    results: Any = None
    log: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


Executor = Callable[[list[str], dict, float, str], Execution]


@dataclass
class SuiteRunner:
    out_dir: str  # logs/ (the report is written by on_update)
    work_dir: str  # plugin builds, benchmark datasets, training runs: large, need not be kept
    budget_s: float
    executor: Optional[Executor] = None  # tests inject fakes; default: run_subprocess
    clock: Callable[[], float] = time.monotonic
    on_update: Callable[[list[StepOutcome]], None] = lambda outcomes: None
    env: dict = field(default_factory=lambda: dict(os.environ))  # every step's environment

    def run(self, steps: Sequence[Step]) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        started = self.clock()
        for step in steps:
            left = self.budget_s - (self.clock() - started)
            blocker = unmet_requirement(step, outcomes)
            if blocker is None:
                outcomes.append(self.run_step(step, left))
            else:
                outcomes.append(StepOutcome(step.name, step.title, "skipped", step.estimate_s,
                                            step.command_line(self.work_dir), reason=blocker))
            self.on_update(outcomes)
        return outcomes

    def run_step(self, step: Step, left_s: float) -> StepOutcome:
        outcome = StepOutcome(step.name, step.title, "skipped", step.estimate_s, step.command_line(self.work_dir))
        if step.estimate_s > left_s:
            outcome.reason = f"does not fit the budget: needs ~{step.estimate_s:.0f} s, {max(left_s, 0):.0f} s left"
            return outcome
        log_path = os.path.join(self.out_dir, "logs", f"{step.name}.log")
        execute = self.executor or run_subprocess
        execution = execute(step.command(sys.executable, self.work_dir), self.env, step_timeout(step, left_s), log_path)
        outcome.seconds, outcome.log = round(execution.seconds, 1), os.path.relpath(log_path, self.out_dir)
        try:
            outcome.results, problem = parsers.PARSERS[step.parser](execution.output, self.work_dir)
        except Exception as error:  # noqa: BLE001 -- an unexpected output must not end the suite
            problem = f"could not read its output: {type(error).__name__}: {error}"
        if execution.returncode is None:
            outcome.status = "timed_out"
            outcome.reason = f"killed after {execution.seconds:.0f} s (budget or 3x estimate)"
        elif execution.returncode != 0:
            outcome.status = "failed"
            outcome.reason = f"exit code {execution.returncode}: {last_error_line(execution.output)}"
        else:
            outcome.status, outcome.reason = ("failed", problem) if problem else ("ok", None)
        return outcome


def unmet_requirement(step: Step, outcomes: Sequence[StepOutcome]) -> Optional[str]:
    """Why `step` cannot be worth running: a step it requires ran in this suite and did not succeed.
    (A required step that was not selected is assumed done earlier, e.g. plugins built by a first run.)"""
    ran = {o.name: o for o in outcomes}
    for name in step.requires:
        if name in ran and ran[name].status != "ok":
            return f"needs {name}, which {ran[name].status.replace('_', ' ')}: {ran[name].reason}"
    return None


def last_error_line(output: str) -> str:
    """The most telling line of a failed command: its last 'Error'/'...Error:' line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error") or "Error:" in line or "error:" in line]
    return (errors or lines or ["(no output)"])[-1][:300]


def run_subprocess(argv: list[str], env: dict, timeout_s: float, log_path: str) -> Execution:
    """Run `argv` from the repository root in its own process group; output to `log_path` too."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode: Optional[int] = proc.wait(timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            returncode = None
        except BaseException:  # Ctrl-C or SIGTERM of the suite: its own session would outlive it
            _kill_group(proc)
            raise
    with open(log_path, errors="replace") as log:
        output = log.read()
    return Execution(returncode, output, time.monotonic() - start)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the step and everything it started (DataLoader workers, compile workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

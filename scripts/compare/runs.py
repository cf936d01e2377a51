"""Run scheduling: train.py children (signals forwarded), resume from the newest snapshot, one or several at once.

Several at once: on CUDA each run gets its own --gpus-per-run devices; on a CPU each run gets --threads
threads (OMP/MKL/torch), so --parallel=2 --threads=1 fills two cores with two runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from scripts.compare.errors import HarnessError
from scripts.compare.presets import REPO, Settings, display_command, format_number, method_runs_dir, train_command
from scripts.compare.state import git_commit, method_record, rel, run_dirs, run_number, save_state, snapshot_nimg, snapshots


class ChildProcesses:
    """train.py children run in their own session; SIGINT/SIGTERM to the harness is forwarded once, so each
    child finishes its step, writes a snapshot and exits (train.py's own handling); the harness then stops."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.signalled: Optional[int] = None
        self.previous: dict = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.forward)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def forward(self, signum, _frame):
        if not any(proc.poll() is None for proc in self.procs):  # no training running: stop right away
            raise KeyboardInterrupt
        if self.signalled is not None:
            return
        self.signalled = signum
        print(f"\nSignal {signum}: asking train.py to write a snapshot and stop (rerun the same command to resume)...",
              flush=True)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def start(self, args: list[str], env: dict, log_file: Optional[str]) -> subprocess.Popen:
        stdout = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 - closed in wait()
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=stdout,
                                stderr=subprocess.STDOUT if stdout else None, start_new_session=True)
        proc.log_handle = stdout  # type: ignore[attr-defined]
        self.procs.append(proc)
        if self.signalled is not None:
            proc.send_signal(signal.SIGTERM)
        return proc

    @staticmethod
    def wait(proc: subprocess.Popen) -> int:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # only if the handler was not installed
                continue
        if getattr(proc, "log_handle", None):
            proc.log_handle.close()
        return code


def training_status(settings: Settings, method: str, record: dict) -> tuple[bool, Optional[str], int]:
    """(finished, run dir to resume from or None, newest cur_nimg)."""
    target = settings.end_kimg * 1000
    records = record.get("snapshots", {})
    best: tuple[int, int, str] = (-1, -1, "")
    for path in snapshots(settings, method):
        nimg = snapshot_nimg(path, records.get(rel(settings, path)))
        key = (nimg, run_number(os.path.dirname(path)), path)
        best = max(best, key)
    nimg, _, path = best
    if nimg < 0:
        return False, None, 0
    return nimg >= target - 1e-6, os.path.dirname(path), nimg


def start_training(settings: Settings, state: dict, method: str, children: ChildProcesses, env: dict,
                   log_file: Optional[str], log: Callable) -> Optional[tuple[subprocess.Popen, float, set]]:
    """Start (or resume) train.py for one method; None when it has already finished training."""
    record = method_record(state, method)
    finished, resume_dir, nimg = training_status(settings, method, record)
    if finished:
        return None
    args = train_command(settings, method, resume=resume_dir)
    command = display_command(args)
    record["commands"].append(command)
    record.setdefault("command", command)
    record["status"] = "training"
    record.setdefault("train_commits", []).append(git_commit())  # the code this train.py runs
    record["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    save_state(state, settings)
    what = f"resuming from {nimg / 1000:g} kimg" if resume_dir else "training"
    log(f"\n[{method}] {what}: {command}")
    before = set(run_dirs(settings, method))
    return children.start(args, env, log_file), time.time(), before


def finish_training(settings: Settings, state: dict, method: str, proc: subprocess.Popen, started: float,
                    before: set, children: ChildProcesses) -> None:
    record = method_record(state, method)
    code = children.wait(proc)
    record["train_seconds"] = record.get("train_seconds", 0.0) + time.time() - started
    record["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    for run in run_dirs(settings, method):
        if run not in before and rel(settings, run) not in record["run_dirs"]:
            record["run_dirs"].append(rel(settings, run))
    finished, _, nimg = training_status(settings, method, record)
    record["status"] = "trained" if finished else "training"
    save_state(state, settings)
    if code != 0:
        raise HarnessError(f"[{method}] train.py failed (exit code {code}); see the log.txt of its run directory "
                                   f"in {method_runs_dir(settings, method)}; rerun the same command to resume")
    if not finished:
        raise HarnessError(f"[{method}] training stopped at {nimg / 1000:g} of {format_number(settings.end_kimg)} kimg; "
                                   f"rerun the same command to resume")


def thread_env(threads: Optional[int]) -> dict:
    """The environment of a train.py child: --threads caps OpenMP/MKL (torch reads them at start-up)."""
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def train_sequentially(settings: Settings, state: dict, method: str, children: ChildProcesses, log: Callable) -> None:
    started = start_training(settings, state, method, children, thread_env(settings.threads), None, log)
    if started is not None:
        finish_training(settings, state, method, *started, children)
    record = method_record(state, method)
    if record["status"] != "done":
        record["status"] = "trained"
    for run in run_dirs(settings, method):  # runs made by an interrupted harness
        if rel(settings, run) not in record["run_dirs"]:
            record["run_dirs"].append(rel(settings, run))
    save_state(state, settings)


@dataclass
class Job:
    """One training: a method of one comparison (settings + its results.json state)."""

    settings: Settings
    state: dict
    method: str

    @property
    def name(self) -> str:
        return f"{self.settings.dataset_name}/seed{self.settings.seed}/{self.method}"


def slot_environments(parallel: int, gpus_per_run: int, threads: Optional[int]) -> list[tuple[dict, str]]:
    """(environment, description) of each parallel slot: its own CUDA devices, or on a CPU its own threads."""
    import torch

    available = torch.cuda.device_count()
    if available == 0:
        if threads is None:
            raise HarnessError(f"--parallel={parallel} on a CPU needs --threads (e.g. --threads=1: one "
                                       f"thread per run, so the runs do not oversubscribe the cores)")
        return [(thread_env(threads), f"CPU, {threads} thread(s)")] * parallel
    needed = parallel * gpus_per_run
    if available < needed:
        raise HarnessError(f"--parallel={parallel} with --gpus-per-run={gpus_per_run} needs "
                                   f"{needed} CUDA devices; {available} found (use --parallel=1)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(available)]
    slots = []
    for slot in range(parallel):
        chosen = ",".join(devices[slot * gpus_per_run:(slot + 1) * gpus_per_run])
        slots.append((dict(thread_env(threads), CUDA_VISIBLE_DEVICES=chosen), f"CUDA devices {chosen}"))
    return slots


def train_in_parallel(jobs: list[Job], parallel: int, children: ChildProcesses, log: Callable,
                      on_trained: Optional[Callable[[Job], None]] = None) -> None:
    """Up to `parallel` trainings at once (see slot_environments); on_trained(job) runs as each one finishes.

    A finished job's on_trained (the scoring, minutes on a CPU) waits until the freed slot has its next
    training started, so the trainings never stand still behind the scoring.
    """
    first = jobs[0].settings if jobs else None
    slots = slot_environments(parallel, first.gpus_per_run, first.threads) if first else []
    free_slots = list(range(parallel))
    queue = list(jobs)
    running: dict[int, tuple[Job, tuple]] = {}
    trained: list[Job] = []
    errors = []
    while queue or running or trained:
        while queue and free_slots and children.signalled is None:
            job = queue.pop(0)
            slot = free_slots.pop(0)
            logs = os.path.join(job.settings.outdir, "logs")
            os.makedirs(logs, exist_ok=True)
            log_file = os.path.join(logs, f"{job.method}.log")
            started = start_training(job.settings, job.state, job.method, children, slots[slot][0], log_file, log)
            if started is None:
                free_slots.append(slot)
                method_record(job.state, job.method)["status"] = "trained"
                save_state(job.state, job.settings)
                trained.append(job)
                continue
            log(f"[{job.name}] on {slots[slot][1]}; output in {log_file}")
            running[slot] = (job, started)
        if children.signalled is not None:
            queue.clear()
        for slot, (job, started) in list(running.items()):
            if started[0].poll() is None:
                continue
            del running[slot]
            free_slots.append(slot)
            try:
                finish_training(job.settings, job.state, job.method, *started, children)
            except HarnessError as err:
                errors.append(err.message)
                continue
            trained.append(job)
        if trained and (not queue or not free_slots or children.signalled is not None):
            job = trained.pop(0)  # every free slot is busy again (or nothing is left to start): score one
            if on_trained is not None and children.signalled is None:
                on_trained(job)
            continue
        time.sleep(0.5)
    if errors:
        raise HarnessError("; ".join(errors))

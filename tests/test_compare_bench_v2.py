"""Benchmark v2 (`cpu-bench-v2`, issue 26 item 4): the planned runs, per-run latent continuity (recorded, resumed),
and the report's fakeclr − adalinear table.

The one training here is real but tiny (0.032 kimg); scores use the colour evaluator and the continuity a
random-weight VGG16 (tests/latent_helpers.py), so no detector weights are needed.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import shutil

import pytest

from compare_helpers import CountingEvaluator, hand_made_run, make_emoji24_zip
from latent_helpers import random_vgg16
from scripts import compare_methods as cm
from scripts.compare import bench_continuity, bench_report, benchmark, presets
from scripts.compare.scores import snapshots_to_score

TINY = dict(kimg=0.032, tick=0.016, snap=1, num_gen=16, evaluator="colour", parallel=1)


def test_v2_preset_resolves_to_the_documented_runs(tmp_path, capsys):
    spec = benchmark.BENCHMARKS["cpu-bench-v2"]
    runs = benchmark.planned_runs(spec, "cpu-bench-v2", benchmark.BenchOptions(), str(tmp_path), {})
    # Smileys before food; seed by seed adalinear, fakeclr, ada (ada has seeds 0-2 only); InsGen after everything.
    expected = []
    for dataset in ("emoji-smileys-32", "emoji-food-32"):
        for seed in range(5):
            expected += [f"{dataset}/{m}/seed{seed}" for m in ("adalinear", "fakeclr", "ada") if m != "ada" or seed < 3]
    expected += [f"{d}/insgen/seed{s}" for d in ("emoji-smileys-32", "emoji-food-32") for s in range(3)]
    assert [r.key for r in runs] == expected and len(expected) == 32
    assert spec.results == "examples/cpu-bench-v2/results.json" and spec.continuity

    for run in runs:
        s = run.settings
        assert (s.cfg, s.mirror, s.dataset_resolution, s.batch, s.kimg, s.tick * s.snap, s.score_every, s.num_gen,
                s.threads, s.ada_kimg) == ("tiny", True, 32, None, 100, 10, 20, 500, 1, 100)
        command = cm.train_command(s, run.method)
        assert "--kimg=100" in command and "--tick=1" in command and "--snap=10" in command
        assert not any(a.startswith("--batch") for a in command)  # the tiny preset's batch (8)
        # --ada-kimg only where the adaptive controller reads it; the linear ramps (adalinear, fakeclr, InsGen
        # below 5K images) ignore it.
        assert ("--ada-kimg=100" in command) == (run.method == "ada"), (run.method, command)
    assert (presets.V2_KIMG, presets.V2_ADA_KIMG, presets.V2_SNAP_KIMG, presets.V2_SCORE_EVERY) == (100, 100, 10, 20)

    # Score points: a snapshot every 10 kimg (names round the kimg down), scored at 0, 20, ..., 100.
    settings = runs[0].settings
    run_dir = pathlib.Path(presets.method_runs_dir(settings, "adalinear")) / "00000-test"
    run_dir.mkdir(parents=True)
    for kimg in range(0, 101, 10):
        (run_dir / f"network-snapshot-{kimg:06d}.pkl").write_bytes(b"")
    scored = [int(pathlib.Path(p).stem.split("-")[-1]) for p in snapshots_to_score(settings, "adalinear")]
    assert scored == [0, 20, 40, 60, 80, 100]

    # A dry run lists every run (nothing recorded) and the --methods subset keeps the spec's order.
    results = tmp_path / "results.json"
    benchmark.run_benchmark("cpu-bench-v2", benchmark.BenchOptions(outdir=str(tmp_path), dry_run=True,
                                                                    results=str(results)), {})
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if "/seed" in line.split(":")[0]]
    assert printed == expected and not results.exists()
    subset = benchmark.planned_runs(spec, "cpu-bench-v2", benchmark.BenchOptions(methods="ada,fakeclr", seeds="3,0"),
                                    str(tmp_path), {})
    assert [r.key for r in subset][:4] == ["emoji-smileys-32/fakeclr/seed3", "emoji-smileys-32/ada/seed3",
                                           "emoji-smileys-32/fakeclr/seed0", "emoji-smileys-32/ada/seed0"]


def test_ada_kimg_reaches_only_the_adaptive_controller(tmp_path):
    data = make_emoji24_zip(tmp_path)
    s = presets.resolve_settings(str(data), "cpu-bench-v2", str(tmp_path / "c"),
                                 "ada,adalinear,fakeclr,insgen,noaug,ada+lecam,diffaugment,fakeclr-adaptive")
    acting = [m for m in s.methods if "--ada-kimg=100" in presets.method_train_args(s, m)]
    assert acting == ["ada", "ada+lecam", "fakeclr-adaptive"]
    assert presets.method_train_args(s, "fakeclr-adaptive") == ["--method=fakeclr", "--ada-kimg=100", "--ada_linear=False"]
    # --train-args may turn the ramp back on (the last value counts, as on train.py's line) or off for insgen.
    ramp = presets.resolve_settings(str(data), "cpu-bench-v2", str(tmp_path / "e"), "fakeclr-adaptive,insgen",
                                    train_args=["--ada_linear=True"])
    assert not any("--ada-kimg=100" in presets.method_train_args(ramp, m) for m in ramp.methods)
    v1 = presets.resolve_settings(str(data), "cpu-bench", str(tmp_path / "d"), "ada")
    assert "ada_kimg" not in v1.training_key() and "--ada-kimg=100" not in presets.method_train_args(v1, "ada")


def test_stop_kimg_stops_every_run_part_way_and_a_later_call_goes_on(tmp_path, monkeypatch):
    """--stop-kimg trains the start of the --kimg schedule (train.py --stop-kimg), records it in the results
    file and the protocol line; the same folder without it trains on to --kimg."""
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    data = make_emoji24_zip(tmp_path)
    with pytest.raises(cm.HarnessError, match="--stop-kimg=0.1: must be above 0 and at most --kimg=0.064"):
        presets.resolve_settings(str(data), "cpu-bench-v2", str(tmp_path / "c"), "fakeclr", kimg=0.064, stop_kimg=0.1)
    settings = presets.resolve_settings(str(data), "cpu-bench-v2", str(tmp_path / "c"), "fakeclr", kimg=0.064,
                                        stop_kimg=0.032)
    assert cm.train_command(settings, "fakeclr")[-2:] == ["--method=fakeclr", "--stop-kimg=0.032"]

    quiet, options = (lambda *a: None), dict(TINY, kimg=0.064, tick=0.008, snap=4)  # snapshots at 0.032, 0.064
    stopped = benchmark.BenchOptions(data=[str(data)], outdir=str(tmp_path / "runs"), methods="adalinear",
                                     seeds="0", results=str(tmp_path / "stopped" / "results.json"))
    benchmark.run_benchmark("cpu-bench-v2", stopped, dict(options, stop_kimg=0.032), evaluator=CountingEvaluator(),
                            log=quiet, continuity=CountingContinuity())
    run = json.loads(pathlib.Path(stopped.results).read_text())["runs"]["emoji24/adalinear/seed0"]
    assert run["status"] == "done" and run["kimg"] == pytest.approx(0.032) and run["target_kimg"] == 0.032
    assert run["options"]["stop_kimg"] == 0.032 and run["options"]["kimg"] == 0.064
    assert run["continuity"]["snapshot"] == "network-snapshot-000000.032.pkl"
    report = (pathlib.Path(stopped.results).parent / "results.md").read_text()
    assert "the first 0.032 kimg of a 0.064 kimg schedule (`--stop-kimg`) per run" in report

    full = benchmark.BenchOptions(data=[str(data)], outdir=str(tmp_path / "runs"), methods="adalinear", seeds="0",
                                  results=str(tmp_path / "full" / "results.json"))
    benchmark.run_benchmark("cpu-bench-v2", full, options, evaluator=CountingEvaluator(), log=quiet,
                            continuity=CountingContinuity())
    run = json.loads(pathlib.Path(full.results).read_text())["runs"]["emoji24/adalinear/seed0"]
    assert run["status"] == "done" and run["kimg"] == pytest.approx(0.064) and "stop_kimg" not in run["options"]
    assert [p["kimg"] for p in run["curve"]] == pytest.approx([0.008, 0.032, 0.064])  # tick 0 is after one step
    assert len(run["commands"]) == 2 and "--resume=" in run["commands"][1]  # went on from 0.032, not from zero


class CountingContinuity(bench_continuity.LatentContinuity):
    """The real measurement at tiny settings with a random-weight VGG16, counting its calls."""

    def __init__(self, ppl_samples: int = 16):
        super().__init__(pairs=2, steps=4, ppl_samples=ppl_samples, vgg=random_vgg16())
        self.calls = 0

    def __call__(self, snapshot, data):
        self.calls += 1
        return super().__call__(snapshot, data)


def test_continuity_is_recorded_and_resumed(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    data = make_emoji24_zip(tmp_path)
    plan = benchmark.BenchOptions(data=[str(data)], outdir=str(tmp_path / "runs"), methods="adalinear", seeds="0",
                                  results=str(tmp_path / "report" / "results.json"))
    measure, quiet = CountingContinuity(), (lambda *a: None)
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=CountingEvaluator(), log=quiet,
                            continuity=measure)
    results_file = pathlib.Path(plan.results)
    run = json.loads(results_file.read_text())["runs"]["emoji24/adalinear/seed0"]
    numbers = run["continuity"]
    assert measure.calls == 1 and run["status"] == "done"
    assert numbers["snapshot"] == "network-snapshot-000000.032.pkl" and numbers["kimg"] == pytest.approx(0.032)
    assert numbers["options"] == measure.options and numbers["options"]["ppl_samples"] == 16
    for space in ("z", "w"):
        smooth = numbers["smoothness"][space]
        assert smooth["steps"] == 2 * 4 and 0 < smooth["mean"] <= smooth["max"] <= 1
        assert 0 <= smooth["jump_fraction"] <= 1
    assert numbers["ppl_w"]["samples"] == 16 and math.isfinite(numbers["ppl_w"]["mean"]) and numbers["ppl_w"]["mean"] > 0
    text = (results_file.parent / "results.md").read_text()
    assert "| PPL-W mean | PPL-W std | jumps Z (%) | jumps W (%) |" in text
    assert "| `emoji24/adalinear/seed0` | network-snapshot-000000.032.pkl |" in text

    # A rerun trains, scores and measures nothing.
    again = CountingEvaluator()
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=again, log=quiet, continuity=measure)
    assert again.calls == 0 and measure.calls == 1
    assert json.loads(results_file.read_text())["runs"]["emoji24/adalinear/seed0"] == run

    # Interrupted after recording, before measuring: the rerun measures only (same latents: the same numbers).
    stored = json.loads(results_file.read_text())
    del stored["runs"]["emoji24/adalinear/seed0"]["continuity"]
    results_file.write_text(json.dumps(stored))
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=again, log=quiet, continuity=measure)
    remeasured = json.loads(results_file.read_text())["runs"]["emoji24/adalinear/seed0"]["continuity"]
    assert again.calls == 0 and measure.calls == 2
    assert remeasured["ppl_w"]["mean"] == pytest.approx(numbers["ppl_w"]["mean"], rel=1e-5)
    for space in ("z", "w"):
        assert remeasured["smoothness"][space] == pytest.approx(numbers["smoothness"][space], rel=1e-5)

    # Other measurement options measure again; without the run directories nothing is measured and nothing lost.
    other = CountingContinuity(ppl_samples=8)
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=again, log=quiet, continuity=other)
    assert other.calls == 1
    shutil.rmtree(tmp_path / "runs" / "bench")
    lines: list[str] = []
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=again, log=lines.append, continuity=other)
    kept = json.loads(results_file.read_text())["runs"]["emoji24/adalinear/seed0"]["continuity"]
    assert other.calls == 1 and kept["options"]["ppl_samples"] == 8
    assert not any("latent continuity" in line for line in lines)  # numbers present: not even a "pending" note
    benchmark.run_benchmark("cpu-bench-v2", plan, dict(TINY), evaluator=again, log=lines.append, continuity=measure)
    assert measure.calls == 2 and any("left pending" in line for line in lines)  # other options, no snapshot here
    assert json.loads(results_file.read_text())["runs"]["emoji24/adalinear/seed0"]["continuity"] == kept


def _pair_report(tmp_path, runs: dict) -> str:
    """The v2 report of a hand-made results file, with the fakeclr − adalinear table."""
    results = dict(version=1, benchmark="cpu-bench-v2", runs=runs, expected=list(runs), updated="2026-12-05T05:00")
    bench_report.write_report(results, str(tmp_path), str(tmp_path / "no-runs"), log=lambda *a: None,
                              pair=("fakeclr", "adalinear"))
    return (tmp_path / "results.md").read_text()


def _pair_row(text: str, metric: str, n: int) -> tuple[float, float, str]:
    """(Δ mean, Δ std, seeds where fakeclr is lower) of one row of the pair table over n seeds."""
    found = re.search(rf"\| toy \| {re.escape(metric)} \| {n} \| ([-\d.]+) ± ([\d.]+) \| (\d) of {n} \|", text)
    assert found, (metric, text)
    return float(found.group(1)), float(found.group(2)), found.group(3)


def test_pair_table_equals_a_hand_computation(tmp_path):
    """fakeclr − adalinear per seed, from a hand-made results file."""
    runs = {}
    for seed, (fid, kid, ppl, jumps) in enumerate([(110, 0.10, 2.0, 0.10), (100, 0.12, 2.5, 0.10), (110, 0.11, 2.0, 0.20)]):
        runs[f"toy/adalinear/seed{seed}"] = hand_made_run("adalinear", seed, fid, kid, ppl, jumps)
    for seed, (fid, kid, ppl, jumps) in enumerate([(100, 0.09, 1.0, 0.0), (90, 0.10, 2.0, 0.10), (120, 0.12, 3.0, 0.05),
                                                   (50, 0.01, 0.1, 0.0)]):
        runs[f"toy/fakeclr/seed{seed}"] = hand_made_run("fakeclr", seed, fid, kid, ppl, jumps)  # seed 3: no adalinear pair
    runs["toy/adalinear/seed3"] = hand_made_run("adalinear", 3, 10, 0.5, 9.0, 0.9, status="partial")  # not done: not paired
    del runs["toy/adalinear/seed3"]["continuity"]
    text = _pair_report(tmp_path, runs)

    def row(metric: str) -> tuple[float, float, str]:
        return _pair_row(text, metric, 3)

    # Final FID: d = 100-110, 90-100, 120-110 = -10, -10, +10: mean -3.333, std sqrt(133.33) = 11.547, lower in 2.
    assert row("final FID") == (pytest.approx(-3.33, abs=0.006), pytest.approx(11.55, abs=0.006), "2")
    # Final KID x1000: -10, -20, +10: mean -6.67, std 15.28, lower in 2.
    assert row("final KID ×10³") == (pytest.approx(-6.67, abs=0.006), pytest.approx(15.28, abs=0.006), "2")
    # PPL-W mean: 1-2, 2-2.5, 3-2 = -1, -0.5, +1: mean -0.1667, std sqrt(1.0833) = 1.0408, lower in 2.
    assert row("PPL-W mean") == (pytest.approx(-0.167, abs=0.0006), pytest.approx(1.041, abs=0.0006), "2")
    # PPL-W std (half the mean here): -0.5, -0.25, +0.5: mean -0.0833, std 0.5204.
    assert row("PPL-W std") == (pytest.approx(-0.083, abs=0.0006), pytest.approx(0.520, abs=0.0006), "2")
    # Jumps Z in %: -10, 0, -15: mean -8.333, std sqrt(58.33) = 7.638; a tie (0) is not "lower": 2 of 3.
    assert row("jumps Z (%)") == (pytest.approx(-8.333, abs=0.0006), pytest.approx(7.638, abs=0.0006), "2")
    assert row("jumps W (%)")[2] == "0"
    # Per-method means: fakeclr PPL-W mean over its 4 done seeds (1, 2, 3, 0.1): 1.525 ± 1.256.
    fakeclr = next(line for line in text.splitlines() if line.startswith("| toy | fakeclr | 4 (0, 1, 2, 3) |"))
    assert "| 1.525 ± 1.253 |" in fakeclr
    # Every run is listed with its numbers, the unfinished one as such.
    assert "| `toy/adalinear/seed3` | run not done |" in text
    assert all(f"| `{key}` | s.pkl |" in text for key, r in runs.items() if r["status"] == "done")


def test_pair_table_pairs_the_curve_point_by_point(tmp_path):
    """The key pair along the curve: two runs of a seed pair only at a kimg where both were scored (a resumed
    run's score at 49 kimg is not paired with the other's at 40: 9 kimg more training), and final − best is each
    run's loss from its best score."""
    runs = {}
    for seed, (a40, f40, a_final, f_final) in enumerate([(150.0, 140.0, 160.0, 150.0), (130.0, 135.0, 140.0, 138.0),
                                                          (120.0, 125.0, 130.0, 126.0)]):
        a, f = hand_made_run("adalinear", seed, a_final, 0.1, 2.0, 0.0), hand_made_run("fakeclr", seed, f_final, 0.1, 2.0, 0.0)
        a["curve"].insert(1, dict(kimg=40.008, fid=a40, kid=0.1))
        f["curve"].insert(1, dict(kimg=49.016 if seed == 2 else 40.016, fid=f40, kid=0.1))  # seed 2: resumed
        a["best"], f["best"] = dict(a["curve"][1]), dict(f["curve"][1])
        runs[f"toy/adalinear/seed{seed}"], runs[f"toy/fakeclr/seed{seed}"] = a, f
    text = _pair_report(tmp_path, runs)

    # At 40 kimg, seeds 0 and 1 only: 140 − 150 = −10 and 135 − 130 = +5: −2.5 ± 10.61, fakeclr lower in 1 of 2.
    assert _pair_row(text, "FID at 40 kimg", 2) == (pytest.approx(-2.5, abs=0.006), pytest.approx(10.61, abs=0.006), "1")
    assert "FID at 49 kimg" not in text  # only fakeclr was scored there: nothing to pair
    assert _pair_row(text, "FID at 100 kimg", 3) == _pair_row(text, "final FID", 3)
    assert _pair_row(text, "FID at 0 kimg", 3) == (0.0, 0.0, "0")
    # final − best: fakeclr 10, 3, 1; adalinear 10, 10, 10: Δ = 0, −7, −9: mean −5.33 ± 4.73, lower in 2 of 3.
    assert _pair_row(text, "final − best FID", 3) == (pytest.approx(-5.33, abs=0.006), pytest.approx(4.73, abs=0.006),
                                                      "2")

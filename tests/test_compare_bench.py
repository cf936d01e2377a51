"""The cpu-bench benchmark of scripts/compare_methods.py: preset, committed results file, resume, report, pictures.

Training runs are real but tiny (0.032 kimg = 4 steps); scores use the harness's `colour` evaluator (the
FID/KID formulas on 4x4 colours), so no Inception weights are needed.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from compare_helpers import HANG_GUARD_S, CountingEvaluator, harness_env, make_emoji24_zip
from scripts import compare_methods as cm
from scripts.compare import bench_diagnostics, bench_report, bench_results, bench_stats, benchmark, pictures
from scripts.compare.errors import HarnessError

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = dict(kimg=0.032, tick=0.016, snap=1, num_gen=16, evaluator="colour", parallel=1)


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory) -> pathlib.Path:
    return make_emoji24_zip(tmp_path_factory.mktemp("bench-data"))


@pytest.fixture(scope="module")
def benched(data_zip, tmp_path_factory):
    """One finished tiny benchmark: ada, seed 0, on the 24-image zip."""
    root = tmp_path_factory.mktemp("bench")
    plan = benchmark.BenchOptions(data=[str(data_zip)], outdir=str(root / "runs"), methods="ada", seeds="0",
                                  results=str(root / "report" / "results.json"))
    evaluator = CountingEvaluator()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNNLIB_CACHE_DIR", str(root / "cache"))
        results = benchmark.run_benchmark("cpu-bench", plan, dict(TINY), evaluator=evaluator, log=lambda *a: None)
    return root, plan, results, evaluator


def test_preset_resolves_to_the_documented_runs(tmp_path):  # both datasets ship in datasets/: runs from a clone
    spec = benchmark.BENCHMARKS["cpu-bench"]
    plan = benchmark.BenchOptions(outdir=str(tmp_path))
    runs = benchmark.planned_runs(spec, "cpu-bench", plan, str(tmp_path), {})
    keys = [r.key for r in runs]
    assert len(keys) == 24 == len(set(keys))
    assert {r.settings.dataset_name for r in runs} == {"emoji-smileys-32", "emoji-food-32"}
    assert {r.settings.dataset_size for r in runs} == {169, 131}
    for method in ("ada", "adalinear", "insgen", "fakeclr"):
        assert sorted(r.settings.seed for r in runs if r.method == method) == [0, 0, 1, 1, 2, 2]
    for run in runs:
        s = run.settings
        assert (s.cfg, s.mirror, s.dataset_resolution, s.kimg, s.num_gen, s.threads) == ("tiny", True, 32, 12, 200, 1)
        command = cm.train_command(s, run.method)
        assert f"--seed={s.seed}" in command and f"--method={run.method}" in command and "--mirror=True" in command
        assert run.key == f"{s.dataset_name}/{run.method}/seed{s.seed}"
    assert not any("forget" in k or "query" in k for k in keys)  # ablations never run by default

    variants = benchmark.planned_runs(spec, "cpu-bench", benchmark.BenchOptions(
        methods="fakeclr-forget-code,fakeclr-query-indep", seeds="0"), str(tmp_path), {})
    commands = {r.method: cm.train_command(r.settings, r.method) for r in variants}
    assert "--method=fakeclr" in commands["fakeclr-forget-code"] and "--forgetting=code" in commands["fakeclr-forget-code"]
    assert "--cl_query_view=independent" in commands["fakeclr-query-indep"]
    ablations = {"fakeclr-queue-fixed32": ["--fqs_schedule=fixed", "--fqs=32"], "fakeclr-lambda-0.3": ["--lambda_D=0.3"],
                 "fakeclr-lambda-3": ["--lambda_D=3"], "fakeclr-noise-0.3": ["--noise_scale=0.3"]}
    for variant in benchmark.planned_runs(spec, "cpu-bench", benchmark.BenchOptions(
            methods=",".join(ablations), seeds="0"), str(tmp_path), {}):
        command = cm.train_command(variant.settings, variant.method)
        assert command[-len(ablations[variant.method]) - 1:] == ["--method=fakeclr"] + ablations[variant.method]

    (curve,) = benchmark.planned_runs(spec, "cpu-bench", benchmark.BenchOptions(stage="curve"), str(tmp_path), {})
    assert curve.key == "curve/emoji-smileys-32/adalinear/seed0"
    assert (curve.settings.kimg, curve.settings.tick * curve.settings.snap, curve.settings.score_every) == (60, 1, 4)


def test_regime_preset_resolves_to_the_documented_runs(tmp_path, capsys):
    """cpu-regime (issue 26, item 3): noaug and ADA (--ada-kimg=100) on emoji-smileys at 32 px to 200 kimg,
    FID/KID of 500 fakes every 10 kimg, one thread each, in its own results file."""
    spec = benchmark.BENCHMARKS["cpu-regime"]
    runs = benchmark.planned_runs(spec, "cpu-regime", benchmark.BenchOptions(outdir=str(tmp_path)), str(tmp_path), {})
    assert [r.key for r in runs] == ["emoji-smileys-32/noaug/seed0", "emoji-smileys-32/ada-kimg100/seed0"]
    commands = {}
    for run in runs:
        s = run.settings
        assert (s.cfg, s.mirror, s.dataset_resolution, s.dataset_size, s.kimg, s.tick * s.snap, s.score_every,
                s.num_gen, s.threads, s.baseline) == ("tiny", True, 32, 169, 200, 10, None, 500, 1, "noaug")
        commands[run.method] = cm.train_command(s, run.method)
    assert commands["noaug"][-2:] == ["--method=ada", "--aug=noaug"]
    assert commands["ada-kimg100"][-2:] == ["--method=ada", "--ada-kimg=100"]
    for command in commands.values():
        assert "--kimg=200" in command and "--tick=1" in command and "--snap=10" in command and "--seed=0" in command
    assert spec.results == "examples/cpu-regime/results.json"

    results = tmp_path / "results.json"
    printed = benchmark.run_benchmark("cpu-regime", benchmark.BenchOptions(outdir=str(tmp_path), dry_run=True,
                                                                            results=str(results)), {})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("emoji-smileys-32/")]
    assert len(lines) == 2 and "--aug=noaug" in lines[0] and "--ada-kimg=100" in lines[1], lines
    assert not results.exists() and printed["runs"] == {}  # a dry run records nothing
    with pytest.raises(Exception, match="has no curve stage"):
        benchmark.planned_runs(spec, "cpu-regime", benchmark.BenchOptions(stage="curve"), str(tmp_path), {})


def test_finished_run_is_recorded_and_skipped_on_rerun(benched):
    root, plan, results, evaluator = benched
    stored = json.loads(pathlib.Path(plan.results).read_text())
    run = stored["runs"]["emoji24/ada/seed0"]
    assert run["status"] == "done" and run["seed"] == 0 and run["final"]["kimg"] == pytest.approx(0.032)
    # (sub-kimg ticks keep a snapshot each: 0.008, 0.024 and 0.032 kimg are all scored)
    assert evaluator.calls == len(run["curve"]) == 3 and all(math.isfinite(p["fid"]) for p in run["curve"])
    assert run["threads"] == 1 and run["options"]["kimg"] == 0.032 and run["options"]["num_gen"] == 16
    assert len(run["load_average"]["start"]) == 3 and run["train_seconds"] > 0 and run["git_commit"]
    assert "emoji24/adalinear/seed2" in stored["expected"] and len(stored["expected"]) == 12  # 4 methods x 3 seeds

    # Rerun, here and on a "machine" without the run directories: nothing trains or scores again.
    shutil.rmtree(root / "runs" / "bench")
    again, lines = CountingEvaluator(), []
    benchmark.run_benchmark("cpu-bench", plan, dict(TINY), evaluator=again, log=lines.append)
    assert again.calls == 0 and not (root / "runs" / "bench").exists()
    assert any("skipped" in line for line in lines)
    assert json.loads(pathlib.Path(plan.results).read_text())["runs"]["emoji24/ada/seed0"] == run

    with pytest.raises(HarnessError, match="other options"):
        benchmark.run_benchmark("cpu-bench", plan, dict(TINY, kimg=0.064), evaluator=again, log=lambda *a: None)


def test_dry_run_marks_the_recorded_runs(benched, capsys):
    _, plan, _, _ = benched
    dry = benchmark.BenchOptions(**{**plan.__dict__, "methods": "ada,fakeclr", "dry_run": True})
    benchmark.run_benchmark("cpu-bench", dry, dict(TINY), evaluator=CountingEvaluator(), log=lambda *a: None)
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    assert lines["emoji24/ada/seed0"] == "recorded, skipped"
    assert lines["emoji24/fakeclr/seed0"].startswith("python train.py") and "--method=fakeclr" in lines["emoji24/fakeclr/seed0"]


def test_dry_run_creates_nothing_and_names_the_zip_a_real_run_would_make(tmp_path, capsys):
    outdir = tmp_path / "runs"
    dry = benchmark.BenchOptions(data=[str(REPO / "datasets" / "emoji-smileys")], outdir=str(outdir), methods="ada",
                                 seeds="0", results=str(tmp_path / "report" / "results.json"), dry_run=True)
    benchmark.run_benchmark("cpu-bench", dry, dict(TINY), evaluator=CountingEvaluator(), log=lambda *a: None)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("emoji-smileys-32/ada/seed0: python train.py ")  # converted (in scratch) to read its name
    assert f"--data={outdir / 'data' / 'emoji-smileys-32.zip'}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no zip, no run directory, no results file


def test_report_only_leaves_an_unchanged_report_untouched(benched, tmp_path):
    _, plan, _, _ = benched
    report = tmp_path / "report"
    shutil.copytree(pathlib.Path(plan.results).parent, report)
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    again = benchmark.BenchOptions(**{**plan.__dict__, "results": str(report / "results.json"), "report_only": True})
    benchmark.run_benchmark("cpu-bench", again, dict(TINY), evaluator=CountingEvaluator(), log=lambda *a: None)
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before  # "updated" too: only a timestamp would move


def test_recorded_run_carries_its_training_statistics(benched):
    _, plan, _, _ = benched
    run = json.loads(pathlib.Path(plan.results).read_text())["runs"]["emoji24/ada/seed0"]
    ticks = run["diagnostics"]
    assert [t["kimg"] for t in ticks] == [0.008, 0.024, 0.032]  # one tick per line, as the scored snapshots
    assert all(0.0 <= t["augment_p"] <= 1.0 and -1.0 <= t["rt"] <= 1.0 for t in ticks)
    assert not any("cl_fake_D" in t for t in ticks)  # ada has no contrastive term


def test_killed_harness_resumes(data_zip, tmp_path):
    results = tmp_path / "report" / "results.json"
    env = harness_env(tmp_path)
    command = [sys.executable, "scripts/compare_methods.py", "--preset=cpu-bench", f"--data={data_zip}",
               f"--outdir={tmp_path / 'runs'}", f"--results={results}", "--methods=ada", "--seeds=0", "--kimg=0.128",
               "--tick=0.064", "--snap=100", "--evaluator=colour", "--num-gen=16"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob("runs/bench/*/seed0/runs/ada/*/network-snapshot-*.pkl")) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode != 0 and "rerun the same command to resume" in output, output
    assert "emoji24/ada/seed0" not in json.loads(results.read_text())["runs"]  # not finished: not recorded

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert second.returncode == 0, second.stdout + second.stderr
    run = json.loads(results.read_text())["runs"]["emoji24/ada/seed0"]
    assert run["status"] == "done" and len(run["run_dirs"]) == 2 and "resume" in run["run_dirs"][1]
    assert len(run["commands"]) == 2 and "--resume=" in run["commands"][1] and run["final"]["kimg"] >= 0.128
    from scripts.compare.state import git_commit

    assert run["git_commit"] == git_commit()  # both starts ran the same code: one commit, not two


def _constructed_results() -> dict:
    """Three seeds of adalinear and fakeclr (final and best FID/KID chosen by hand), one pending seed of ada."""
    fids = {"adalinear": [100.0, 110.0, 120.0], "fakeclr": [90.0, 112.0, 100.0]}
    kids = {"adalinear": [0.10, 0.12, 0.11], "fakeclr": [0.09, 0.10, 0.12]}
    runs = {}
    for method, values in fids.items():
        for seed, fid in enumerate(values):
            kid = kids[method][seed]
            curve = [dict(kimg=0.0, fid=300.0 + seed, kid=0.3), dict(kimg=4.0, fid=fid - 5, kid=kid), dict(kimg=8.0, fid=fid, kid=kid)]
            runs[f"toy/{method}/seed{seed}"] = dict(
                kind="bench", dataset="toy", method=method, seed=seed, status="done", kimg=8.0, target_kimg=8.0,
                options=dict(cfg="tiny", resolution=32, mirror=True, kimg=8.0, tick=1, snap=4, num_gen=200, eval_seed=0),
                curve=curve, final=dict(curve[-1]), best=dict(curve[1]), train_seconds=60.0, eval_seconds=30.0,
                threads=1, load_average=dict(start=[1.0, 1.0, 1.0], end=[2.0, 2.0, 2.0]), git_commit="abc",
                run_dirs=[], local_dir="bench/toy/seed0")
    for seed in range(3):  # four ticks of training statistics per fakeclr run
        runs[f"toy/fakeclr/seed{seed}"]["diagnostics"] = [
            dict(kimg=float(k), cl_fake_D=loss + 0.1 * seed, fake_chance=math.log(33), fake_negatives=32.0,
                 fake_top1=0.1 * k, rt=0.6, score_real=1.0 + seed, score_fake=-1.0)
            for k, loss in enumerate([3.5, 3.0, 2.8, 2.6])]
    expected = [f"toy/{m}/seed{s}" for s in range(3) for m in ("ada", "adalinear", "fakeclr")]
    return dict(version=1, benchmark="cpu-bench", runs=runs, expected=expected, updated="2026-12-02T08:00")


def test_report_statistics_equal_a_hand_computation(tmp_path):
    results = _constructed_results()
    bench_report.write_report(results, str(tmp_path), str(tmp_path / "no-runs"), log=lambda *a: None)
    text = (tmp_path / "results.md").read_text()
    assert "**6 of 9 runs done**" in text
    for seed in range(3):
        assert f"- `toy/ada/seed{seed}`" in text  # pending, listed

    # Final FID adalinear 100, 110, 120: mean 110, std 10. fakeclr 90, 112, 100: mean 100.67, std sqrt(121.33) = 11.015.
    assert re.search(r"\| toy \| adalinear \| 3 \(0, 1, 2\) \| 110\.00 ± 10\.00 \| 105\.00 ± 10\.00 \| 110\.00 ± 10\.00 \|", text)
    assert re.search(r"\| toy \| fakeclr \| 3 \(0, 1, 2\) \| 100\.67 ± 11\.02 \|", text)
    # Paired final FID: d = 10, -2, 20 -> mean 9.333, std 11.015, better in 2 of 3, t = 9.333 / (11.015 / sqrt 3) = 1.468.
    # With 3 seeds a two-sided 5 % test needs |t| > 4.303 (t table, 2 degrees of freedom), printed beside t.
    row = re.search(r"\| toy \| fakeclr \| final FID \| 3 \| ([\d.]+) ± ([\d.]+) \| 2 of 3 \| \+([\d.]+) \(4\.30\) \|", text)
    assert row, text
    assert float(row.group(1)) == pytest.approx(9.33, abs=0.006) and float(row.group(2)) == pytest.approx(11.02, abs=0.006)
    assert float(row.group(3)) == pytest.approx(9.3333 / (math.sqrt(121.3333) / math.sqrt(3)), abs=0.006)
    # Final KID x1000: adalinear 100, 120, 110; fakeclr 90, 100, 120 -> d = 10, 20, -10: mean 6.67, std 15.28, 2 of 3.
    kid = re.search(r"\| toy \| fakeclr \| final KID ×10³ \| 3 \| ([-\d.]+) ± ([\d.]+) \| 2 of 3 \|", text)
    assert kid and float(kid.group(1)) == pytest.approx(6.67, abs=0.006) and float(kid.group(2)) == pytest.approx(15.28, abs=0.006)

    # Diagnostics: the mean of the last 3 ticks per run, then mean ± std over seeds. CL fake_D: 2.8 + 0.1 seed
    # -> 2.90 ± 0.10; tick 1 (tick 0 is one step on an empty queue) 3.0 + 0.1 seed -> 3.10 ± 0.10;
    # top-1 (0.1 + 0.2 + 0.3) / 3 = 0.20 in every seed;
    # D real - fake = 2 + seed -> 3.00 ± 1.00; log(1+K) = log 33 = 3.50; the runs without statistics have no row.
    diag = next(line for line in text.splitlines() if line.startswith("| toy | fakeclr | 3 | "))
    cells = [c.strip() for c in diag.strip("|").split("|")]
    columns = dict(zip([title for title, _, _ in bench_diagnostics.COLUMNS], cells[3:]))
    assert columns["CL fake_D"] == "2.90 ± 0.10" and columns["CL fake_D tick 1"] == "3.10 ± 0.10"
    assert columns["top-1"] == "0.20 ± 0.00" and columns["D real − fake"] == "3.00 ± 1.00"
    assert columns["log(1+K)"] == "3.50 ± 0.00" and columns["K"] == "32 ± 0" and columns["CL real_D"] == "—"
    assert "| toy | adalinear | 3 | " not in text

    # An ablation expected on another dataset only: a row there, none on the datasets it was not planned for.
    results["expected"].append("toy2/fakeclr-lambda-3/seed0")
    bench_report.write_report(results, str(tmp_path), str(tmp_path / "no-runs"), log=lambda *a: None)
    text = (tmp_path / "results.md").read_text()
    assert "| toy2 | fakeclr-lambda-3 | 0 (—) |" in text and "| toy | fakeclr-lambda-3 |" not in text
    assert "| toy2 | adalinear |" not in text and "- `toy2/fakeclr-lambda-3/seed0`" in text
    assert (tmp_path / "cl_gain-toy.png").is_file() and (tmp_path / "rt-toy.png").is_file()
    gain = bench_diagnostics.series_over_seeds(bench_results.runs_of(results), "toy", "fakeclr", "cl_gain")
    assert [kimg for kimg, _ in gain] == [1, 2, 3]  # tick 0 (one step) is left out
    assert gain[0][1].mean == pytest.approx(math.log(33) - 3.1) and gain[0][1].std == pytest.approx(0.1)

    stats = bench_stats.paired({0: 1.0, 1: 2.0}, {0: 1.5, 1: 1.0, 2: 0.0})  # seed 2 unpaired: ignored
    assert (stats.n, stats.better) == (2, 1) and stats.mean == pytest.approx(0.25)
    from PIL import Image

    with Image.open(tmp_path / "fid_vs_kimg-toy.png") as image:
        assert image.size == cm.PLOT_SIZE
        colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    assert cm.METHOD_COLOURS["adalinear"] in colours and cm.METHOD_COLOURS["fakeclr"] in colours


def test_key_pair_differences_carry_t_and_the_bar_it_must_clear():
    # first − second over the shared seeds 0-2: d = -10, -20, 0 -> mean -10, std 10, first lower in 2 of 3,
    # t = -10 / (10 / sqrt 3) = -1.732; seed 3 of `first` has no partner and is ignored.
    first, second = {0: 90.0, 1: 100.0, 2: 120.0, 3: 0.0}, {0: 100.0, 1: 120.0, 2: 120.0}
    result = bench_stats.lower_by(first, second)
    assert (result.n, result.better) == (3, 2)
    assert result.mean == pytest.approx(-10.0) and result.std == pytest.approx(10.0)
    assert result.t == pytest.approx(-math.sqrt(3))
    # Student's t, two-sided 5 %: df 1 12.706, 2 4.303, 4 2.776; between tabled df the smaller df (stricter bar).
    assert [bench_stats.t_critical(n) for n in (1, 2, 3, 5, 12, 100)] == [None, 12.706, 4.303, 2.776, 2.228, 2.042]
    assert bench_stats.lower_by({0: 1.0}, {0: 2.0}).t is None  # one seed: no t
    assert str(bench_stats.lower_by({0: 1.0}, {0: 1.0}).mean) == "0.0"  # not "-0.0" in the report


def test_curve_band_files_a_resumed_runs_odd_snapshots_under_their_scoring_point():
    # v2 scores the first snapshot at or past each multiple of 20 kimg; a resumed run's fall at 49 and 69.
    def run(seed, kimgs, fids):
        return dict(dataset="toy", method="adalinear", seed=seed, status="done",
                    curve=[dict(kimg=k, fid=f) for k, f in zip(kimgs, fids)])
    runs = {"a": run(0, [0.008, 20.008, 40.008, 60.008, 100.0], [300, 200, 150, 140, 130]),
            "b": run(1, [0.008, 20.008, 49.016, 69.016, 100.0], [280, 180, 130, 120, 150])}
    band = bench_stats.curve_band(runs, "toy", "adalinear", score_every=20)
    assert [kimg for kimg, _ in band] == [0, 20, 40, 60, 100]
    assert [s.n for _, s in band] == [2] * 5 and band[2][1].mean == pytest.approx(140.0)
    exact = bench_stats.curve_band(runs, "toy", "adalinear")  # no scoring grid: one point per exact kimg
    assert len(exact) == 7 and dict(exact)[49.016].n == 1
    assert bench_report.score_every_of(dict(benchmark="cpu-bench-v2")) == 20
    assert bench_report.score_every_of(dict(benchmark="cpu-regime")) is None


def test_each_benchmark_pairs_against_its_own_presets_baseline(tmp_path):
    # cpu-regime compares ADA with no augmentation: its paired table must be against noaug, not adalinear.
    results = _constructed_results()
    for key in list(results["runs"]):
        run = results["runs"].pop(key)
        run["method"] = {"adalinear": "noaug", "fakeclr": "ada-kimg100"}[run["method"]]
        results["runs"][f"toy/{run['method']}/seed{run['seed']}"] = run
    results.update(benchmark="cpu-regime", expected=sorted(results["runs"]))
    bench_report.write_report(results, str(tmp_path), str(tmp_path / "no-runs"), log=lambda *a: None)
    text = (tmp_path / "results.md").read_text()
    assert "## Improvement over noaug, paired over seeds" in text and "adalinear" not in text
    # The same numbers as the adalinear/fakeclr pair above: final FID d = 10, -2, 20, better in 2 of 3.
    assert re.search(r"\| toy \| ada-kimg100 \| final FID \| 3 \| 9\.33 ± 11\.02 \| 2 of 3 \|", text), text
    assert bench_report.baseline_of(dict(benchmark="cpu-bench-v2")) == "adalinear"
    assert bench_report.baseline_of({}) == bench_report.BASELINE


def test_diagnostics_follow_the_trajectory_a_resumed_run_finished_on(tmp_path):
    # 00000 was killed after logging ticks to 6 kimg and resumed from its 3 kimg snapshot into 00001; the
    # results file lists the newer directory first. Ticks 4-6 of 00000 were thrown away by the resume.
    def write(name: str, kimgs: list[float], rt: float) -> str:
        run = tmp_path / name
        run.mkdir()
        lines = [json.dumps({"Progress/kimg": {"num": 1, "mean": k}, "Loss/signs/real": {"num": 1, "mean": rt}})
                 for k in kimgs]
        (run / "stats.jsonl").write_text("\n".join(lines) + "\n")
        return str(run)

    killed = write("00000-toy-ada", [0.008, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], rt=0.5)
    resumed = write("00001-toy-ada-resume", [3.008, 4.0, 5.0], rt=0.9)
    ticks, _ = bench_diagnostics.read_run_logs([resumed, killed])
    assert [t["kimg"] for t in ticks] == [0.008, 1.0, 2.0, 3.0, 3.008, 4.0, 5.0]
    assert [t["rt"] for t in ticks] == [0.5] * 4 + [0.9] * 3


def test_train_seconds_count_every_segment_from_the_logs(tmp_path):
    """The harness times only segments that end normally; a killed one is in its own log (Timing/total_sec,
    per process). A cut last line is skipped; a recorded time above the logged one is kept."""
    local = tmp_path / "bench" / "toy" / "seed0"

    def write(name: str, seconds: list[float], cut: bool = False) -> str:
        run = local / "runs" / "ada" / name
        run.mkdir(parents=True)
        lines = [json.dumps({"Progress/kimg": {"num": 1, "mean": i}, "Timing/total_sec": {"num": 1, "mean": s}})
                 for i, s in enumerate(seconds)]
        (run / "stats.jsonl").write_text("\n".join(lines) + ("\n{\"Timing/tot" if cut else "\n"))
        return f"runs/ada/{name}"

    dirs = [write("00000-toy-ada", [10.0, 600.0, 1200.0], cut=True), write("00001-toy-ada-resume", [5.0, 900.0])]
    run = dict(local_dir="bench/toy/seed0", run_dirs=dirs, train_seconds=900.0)  # the harness saw the 2nd only
    results = dict(runs={"toy/ada/seed0": run, "toy/ada/seed1": dict(local_dir="gone", run_dirs=["x"], train_seconds=7.0)})
    assert bench_diagnostics.attach(results, str(tmp_path), log=lambda *a: None) == 1
    assert run["train_seconds"] == 2100.0 and results["runs"]["toy/ada/seed1"]["train_seconds"] == 7.0
    run["train_seconds"] = 2500.0  # e.g. start-up time the log does not count: the larger figure stays
    bench_diagnostics.attach(results, str(tmp_path), log=lambda *a: None)
    assert run["train_seconds"] == 2500.0


def test_pictures_have_the_right_sizes(benched):
    root, plan, _, _ = benched
    report = pathlib.Path(plan.results).parent
    from PIL import Image

    grid, strip = (report / name for name in bench_report.picture_names("emoji24", "ada"))
    rows, cols = pictures.GRID_SHAPE
    with Image.open(grid) as image:
        assert image.size == (cols * 32, rows * 32)
    with Image.open(strip) as image:
        assert image.size == (pictures.STRIP_STEPS * 32, pictures.STRIP_PAIRS * 32)
        colours = image.convert("RGB").getcolors(1 << 20)
    assert len(colours) > 100  # real images, not an empty canvas
    ends = pictures.strip_latents(8)
    assert ends.shape == (8, 8, 8) and not pytest.approx(ends[:, 0]) == ends[:, -1]


def test_continuity_step_says_one_line_when_the_script_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(benchmark, "CONTINUITY_SCRIPT", str(tmp_path / "latent_continuity.py"))
    lines = []
    assert benchmark.run_continuity(_constructed_results(), str(tmp_path), str(tmp_path), lines.append) is None
    assert len(lines) == 1 and "latent_continuity.py is missing" in lines[0]


def test_two_harnesses_saving_one_results_file_keep_both_runs(tmp_path):
    path = str(tmp_path / "results.json")
    first, second = (bench_results.load(path, "cpu-bench") for _ in range(2))  # both read the empty file
    first["runs"]["a/ada/seed0"] = dict(kind="bench", recorded="2026-12-02T08:00:00")
    second["runs"]["a/ada/seed1"] = dict(kind="bench", recorded="2026-12-02T08:01:00")
    bench_results.save(path, first)
    bench_results.save(path, second)
    assert set(json.loads(pathlib.Path(path).read_text())["runs"]) == {"a/ada/seed0", "a/ada/seed1"}

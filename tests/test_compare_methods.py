"""scripts/compare_methods.py: trains methods with the real train.py, scores snapshots, reports, resumes.

The training runs are real (tiny preset, 0.032 kimg = 4 steps each); most scoring uses the harness's
`colour` evaluator (the FID/KID formulas on 4x4 colours), so only the last test needs Inception weights.
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
import types

import pytest

from compare_helpers import HANG_GUARD_S, CountingEvaluator, harness_env, make_emoji24_zip
from metrics import detectors
from scripts import compare_methods as cm
from scripts.compare.errors import HarnessError

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = dict(kimg=0.032, tick=0.016, snap=1, num_gen=16, evaluator="colour")
CLI_TINY = ["--preset=cpu-smoke", "--tick=0.016", "--snap=1", "--evaluator=colour", "--num-gen=16"]


@pytest.fixture(scope="module")
def data_zip(tmp_path_factory) -> pathlib.Path:
    return make_emoji24_zip(tmp_path_factory.mktemp("compare-data"))


@pytest.fixture(scope="module")
def compared(data_zip, tmp_path_factory) -> tuple[cm.Settings, dict, CountingEvaluator]:
    """One finished two-method comparison (ada, fakeclr), shared by the tests below (which copy it to modify it)."""
    outdir = tmp_path_factory.mktemp("compare") / "cmp"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNNLIB_CACHE_DIR", str(outdir.parent / "cache"))
        settings = cm.resolve_settings(str(data_zip), "cpu-smoke", str(outdir), "ada,fakeclr", **TINY)
        evaluator = CountingEvaluator()
        state = cm.run_comparison(settings, evaluator=evaluator, log=lambda *a: None)
    return settings, state, evaluator


def _run_dirs(outdir) -> set[str]:
    return {str(p.relative_to(outdir)) for p in pathlib.Path(outdir).glob("runs/*/*") if p.is_dir()}


def test_results_files_hold_finite_numbers_for_every_method(compared):
    settings, state, evaluator = compared
    outdir = pathlib.Path(settings.outdir)
    results = json.loads((outdir / "results.json").read_text())
    assert results == json.loads(json.dumps(state))
    assert set(results["methods"]) == {"ada", "fakeclr"} and results["metric_names"] == ["colour-fid16_full", "colour-kid16_full"]
    for method, r in results["methods"].items():
        assert r["status"] == "done" and r["curve"]
        for point in r["curve"]:
            assert math.isfinite(point["fid"]) and math.isfinite(point["kid"]) and point["fid"] > 0
        assert r["final"]["kimg"] == pytest.approx(0.032) and r["kimg"] == pytest.approx(0.032)
        assert r["best"]["fid"] <= r["final"]["fid"]
        assert len(r["run_dirs"]) == 1 and (outdir / r["run_dirs"][0] / "training_options.json").is_file()
        options = json.loads((outdir / r["run_dirs"][0] / "training_options.json").read_text())
        assert options["random_seed"] == 0 and options["total_kimg"] == pytest.approx(0.032)
        assert r["command"].startswith("python train.py ") and f"--method={method}" in r["command"]
        assert "--seed=0" in r["command"] and "--cfg=tiny" in r["command"]
    assert evaluator.calls == sum(len(r["snapshots"]) for r in results["methods"].values())

    table = (outdir / "results.md").read_text()
    assert "| Method | kimg | Final colour-FID | Best colour-FID (kimg) | Final colour-KID ×10³ |" in table
    assert "## colour-FID at every snapshot" in table and "FID is the FID formula on 4x4 average colours" in table
    assert "Final FID" not in table and "Best FID" not in table  # no column calls the colour score FID
    for method in ("ada", "fakeclr"):
        # (the best FID may lie at any snapshot: sub-kimg ticks keep one snapshot each)
        row = re.search(rf"^\| {method} \| 0\.032 \| ([-\d.]+) \| ([-\d.]+) \((0\.008|0\.024|0\.032)\) \| ([-\d.]+) \| (.+?) \|",
                        table, re.M)
        assert row, table
        assert all(math.isfinite(float(row.group(i))) for i in (1, 2, 4))
        final = results["methods"][method]["final"]["fid"]
        assert float(row.group(1)) == pytest.approx(final, abs=0.006)
    fakeclr_vs_ada = re.search(r"^\| fakeclr \|(?:[^|]*\|){4} ([-+]\d+\.\d) % \|", table, re.M)
    ada, fakeclr = (results["methods"][m]["final"]["fid"] for m in ("ada", "fakeclr"))
    assert float(fakeclr_vs_ada.group(1)) == pytest.approx(100 * (ada - fakeclr) / ada, abs=0.051)

    from PIL import Image

    with Image.open(outdir / "fid_vs_kimg.png") as image:
        assert image.format == "PNG" and image.size == cm.PLOT_SIZE
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 20)}
    assert cm.METHOD_COLOURS["ada"] in colours and cm.METHOD_COLOURS["fakeclr"] in colours


def test_rerun_skips_finished_methods(compared):
    settings, _, _ = compared
    before_json = json.loads((pathlib.Path(settings.outdir) / "results.json").read_text())
    before_dirs = _run_dirs(settings.outdir)
    evaluator = CountingEvaluator()
    lines = []
    cm.run_comparison(settings, evaluator=evaluator, log=lines.append)
    after_json = json.loads((pathlib.Path(settings.outdir) / "results.json").read_text())
    assert evaluator.calls == 0 and _run_dirs(settings.outdir) == before_dirs
    assert after_json["methods"] == before_json["methods"]
    assert sum("skipped" in line for line in lines) == 2


def test_half_finished_comparison_scores_only_what_is_missing(compared, tmp_path, monkeypatch):
    settings, _, _ = compared
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "cmp"
    shutil.copytree(settings.outdir, copy)
    results = json.loads((copy / "results.json").read_text())
    fakeclr = results["methods"]["fakeclr"]
    fakeclr.update(status="trained", snapshots={}, curve=[], final=None, best=None)  # killed before scoring
    (copy / "results.json").write_text(json.dumps(results))
    settings = cm.resolve_settings(settings.data, "cpu-smoke", str(copy), "ada,fakeclr", **TINY)
    evaluator = CountingEvaluator()
    state = cm.run_comparison(settings, evaluator=evaluator, log=lambda *a: None)
    scored = len(compared[1]["methods"]["fakeclr"]["snapshots"])  # 3: sub-kimg ticks keep one snapshot each
    assert evaluator.calls == scored == 3 and _run_dirs(copy) == _run_dirs(compared[0].outdir)  # no training, ada not rescored
    assert state["methods"]["fakeclr"]["status"] == "done" and math.isfinite(state["methods"]["fakeclr"]["final"]["fid"])
    assert state["methods"]["ada"] == compared[1]["methods"]["ada"]

    with pytest.raises(HarnessError, match="other training settings"):
        cm.run_comparison(cm.resolve_settings(settings.data, "cpu-smoke", str(copy), "ada", **dict(TINY, kimg=0.064)),
                          evaluator=evaluator, log=lambda *a: None)


def test_interrupted_training_resumes_from_its_snapshot(data_zip, tmp_path):
    outdir = tmp_path / "cmp"
    env = harness_env(tmp_path)
    command = [sys.executable, "scripts/compare_methods.py", f"--data={data_zip}", f"--outdir={outdir}",
               "--methods=ada", "--kimg=0.128", *CLI_TINY, "--tick=0.064", "--snap=100"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list(outdir.glob("runs/ada/*/network-snapshot-*.pkl")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # forwarded to train.py, which snapshots and stops
    output, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode != 0 and "rerun the same command to resume" in output, output
    record = json.loads((outdir / "results.json").read_text())["methods"]["ada"]
    assert record["status"] == "training" and len(record["run_dirs"]) == 1

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert second.returncode == 0, second.stdout + second.stderr
    record = json.loads((outdir / "results.json").read_text())["methods"]["ada"]
    assert record["status"] == "done" and len(record["run_dirs"]) == 2 and "resume" in record["run_dirs"][1]
    assert len(record["commands"]) == 2 and "--resume=" in record["commands"][1]
    assert record["final"]["kimg"] >= 0.128 and len(record["curve"]) >= 2
    assert all(math.isfinite(p["fid"]) for p in record["curve"])
    kimgs = [p["kimg"] for p in record["curve"]]
    assert kimgs == sorted(set(kimgs))


@pytest.mark.skipif(not detectors.have_offline_weights("inception"),
                    reason="no Inception weights (python scripts/fetch_weights.py)")
def test_inception_scores_of_a_trained_comparison(compared, tmp_path):
    settings, _, _ = compared
    copy = tmp_path / "cmp"
    shutil.copytree(settings.outdir, copy)
    env = harness_env(tmp_path)
    result = subprocess.run([sys.executable, "scripts/compare_methods.py", f"--data={settings.data}", f"--outdir={copy}",
                             "--methods=ada,fakeclr", "--kimg=0.032", *CLI_TINY, "--evaluator=inception", "--num-gen=24"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((copy / "results.json").read_text())
    assert results["metric_names"] == ["fid24_full", "kid24_full"] and _run_dirs(copy) == _run_dirs(settings.outdir)
    for r in results["methods"].values():
        assert r["status"] == "done"
        assert all(math.isfinite(p["fid"]) and p["fid"] > 0 and math.isfinite(p["kid"]) for p in r["curve"])
    assert "fid24_full" in (copy / "results.md").read_text()


def test_presets_and_overrides(data_zip):
    paper = cm.resolve_settings(str(data_zip), "paper", None, "ada,insgen,fakeclr")
    assert (paper.cfg, paper.batch, paper.mirror, paper.kimg, paper.num_gen) == ("paper256", 64, True, 10000, 50000)
    assert "--ada_linear=True" in cm.train_command(paper, "insgen") and "--batch=64" in cm.train_command(paper, "ada")
    assert cm.paper_kimg(5000)[0] == 25000
    smoke = cm.resolve_settings(str(data_zip), "cpu-smoke", None, "ada", kimg=0.064, num_gen=32, batch=4)
    assert (smoke.cfg, smoke.kimg, smoke.num_gen, smoke.batch) == ("tiny", 0.064, 32, 4)
    assert "--kimg=0.064" in cm.train_command(smoke, "ada")
    with pytest.raises(HarnessError, match="unknown method"):
        cm.resolve_settings(str(data_zip), "cpu-smoke", None, "ada,stylegan9")
    with pytest.raises(HarnessError, match="labelled"):
        cm.resolve_settings(str(data_zip), "cpu-smoke", None, "contragan")
    assert cm.format_number(10000.0) == "10000" and cm.format_number(0.032) == "0.032"
    assert cm.nice_ticks(0, 4) == [0, 1, 2, 3, 4] and cm.nice_ticks(183, 312)[0] <= 183


def test_parallel_trainings_start_before_the_scoring_of_a_finished_one(monkeypatch):
    """--parallel: a freed slot gets its next training before the finished run is scored (minutes on a CPU)."""
    from scripts.compare import runs

    events = []

    class FakeProc:  # finishes after `lifetime` polls
        def __init__(self, lifetime):
            self.lifetime = lifetime

        def poll(self):
            self.lifetime -= 1
            return 0 if self.lifetime <= 0 else None

    def fake_start(settings, state, method, children, env, log_file, log):
        events.append(f"start {method}")
        return FakeProc({"a": 1, "b": 6, "c": 6}[method]), 0.0, set()

    def fake_finish(settings, state, method, proc, started, before, children):
        events.append(f"trained {method}")

    monkeypatch.setattr(runs, "start_training", fake_start)
    monkeypatch.setattr(runs, "finish_training", fake_finish)
    monkeypatch.setattr(runs, "slot_environments", lambda parallel, gpus, threads: [({}, "slot")] * parallel)
    monkeypatch.setattr(runs.time, "sleep", lambda seconds: None)
    settings = types.SimpleNamespace(outdir="/nonexistent-outdir", gpus_per_run=1, threads=1, dataset_name="toy",
                                     seed=0)
    monkeypatch.setattr(runs.os, "makedirs", lambda *a, **k: None)
    jobs = [runs.Job(settings, {}, method) for method in ("a", "b", "c")]

    class Children:
        signalled = None

    runs.train_in_parallel(jobs, 2, Children(), log=lambda *a: None,
                           on_trained=lambda job: events.append(f"score {job.method}"))
    assert events.index("start c") < events.index("score a")  # c took a's slot before a was scored
    assert sorted(e for e in events if e.startswith("score")) == ["score a", "score b", "score c"]
    assert events[-1] == "score c"


def test_the_registered_add_on_methods_run_in_the_harness(data_zip):
    names = "ada+lecam,diffaugment,apa,fakeclr+lecam"
    settings = cm.resolve_settings(str(data_zip), "cpu-smoke", None, names)
    assert settings.methods == names.split(",")
    for name in settings.methods:
        assert f"--method={name}" in cm.train_command(settings, name)
    with pytest.raises(HarnessError, match="unknown method"):
        cm.resolve_settings(str(data_zip), "cpu-smoke", None, "ada+fakeclr")  # two base methods


def test_run_by_path_from_another_folder_imports_the_package_and_errors_are_one_line(tmp_path):
    """`python <repo>/scripts/compare_methods.py` started elsewhere runs as the scripts.compare_methods module of
    this checkout; a HarnessError from the library (here: --data missing) is one line, exit 1."""
    missing = tmp_path / "none.zip"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "compare_methods.py"), f"--data={missing}", "-n"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == f"Error: --data={missing}: no such directory or zip file; build one with dataset_tool.py"

"""demo.py (README command 1): option checks before anything runs, the summary line, the newest snapshot."""

from __future__ import annotations

import json

from click.testing import CliRunner

import demo


def test_kimg_takes_fractions_and_a_bad_resolution_stops_before_any_step(tmp_path, monkeypatch):
    steps = []
    monkeypatch.setattr(demo, "run", lambda args: steps.append(args))
    result = CliRunner().invoke(demo.main, [f"--outdir={tmp_path / 'a'}", "--resolution=48"])
    assert result.exit_code == 2 and "'48' is not one of '16', '32', '64'" in result.output
    result = CliRunner().invoke(demo.main, [f"--outdir={tmp_path / 'b'}", "--resolution=128"])
    assert result.exit_code == 2 and steps == [] and not (tmp_path / "a").exists()
    result = CliRunner().invoke(demo.main, [f"--outdir={tmp_path / 'c'}", "--kimg=0"])
    assert result.exit_code == 2 and "give a positive number of kimg" in result.output
    # A fraction reaches train.py as typed (the stubbed steps make no run directory, so the demo stops there).
    CliRunner().invoke(demo.main, [f"--outdir={tmp_path / 'd'}", "--kimg=0.5", "--metrics=none"])
    assert steps[0][0] == "dataset_tool.py" and steps[1][0] == "train.py" and "--kimg=0.5" in steps[1]


def test_metric_summary_names_each_value_once(tmp_path, capsys):
    row = dict(metric="fid500_full", results={"fid500_full": 313.81})
    (tmp_path / "metric-fid500_full.jsonl").write_text(json.dumps(row) + "\n")
    demo.print_metric_summary(str(tmp_path))
    assert capsys.readouterr().out == "fid500_full = 313.8\n"


def test_the_shipped_start_is_used_at_its_own_resolution_only(capsys):
    assert demo.starting_network("pretrained", 32) == [f"--resume={demo.PRETRAINED}"]
    assert demo.starting_network("pretrained", 64) == [] and "from scratch" in capsys.readouterr().out
    assert demo.starting_network("none", 32) == []
    assert demo.starting_network("my.pkl", 32) == ["--resume=my.pkl"]


def test_the_demo_fine_tunes_the_shipped_start_with_two_processes(tmp_path, monkeypatch):
    steps = []
    monkeypatch.setattr(demo, "run", lambda args: steps.append(args))
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)
    CliRunner().invoke(demo.main, [f"--outdir={tmp_path}", "--metrics=none"])
    train = steps[1]
    assert "--method=ada" in train and "--kimg=24" in train and f"--resume={demo.PRETRAINED}" in train
    assert "--gpus=2" in train and "--cpu-procs=True" in train

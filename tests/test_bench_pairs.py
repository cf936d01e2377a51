"""scripts/bench_pairs.py: the report's pair table for any two methods, from one or several results files."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from compare_helpers import hand_made_run
from scripts import bench_pairs


def _write(path, runs: dict) -> str:
    path.write_text(json.dumps(dict(version=1, benchmark="cpu-bench-v2", runs=runs, expected=list(runs))))
    return str(path)


def _files(tmp_path) -> tuple[str, str]:
    """ada seeds 0-2 in the main file; the variant's seeds 0-1 in a file of its own (seed 2 unfinished)."""
    main = {f"toy/ada/seed{s}": hand_made_run("ada", s, fid, 0.1, 2.0, 0.0) for s, fid in enumerate([120, 130, 125])}
    main["toy/adalinear/seed0"] = hand_made_run("adalinear", 0, 150, 0.2, 2.0, 0.0)
    variant = {f"toy/fakeclr-adaptive/seed{s}": hand_made_run("fakeclr-adaptive", s, fid, 0.1, 3.0, 0.0)
               for s, fid in enumerate([110, 134])}
    variant["toy/fakeclr-adaptive/seed2"] = hand_made_run("fakeclr-adaptive", 2, 10, 0.1, 3.0, 0.0, status="partial")
    return _write(tmp_path / "main.json", main), _write(tmp_path / "variant.json", variant)


def _row(text: str, metric: str) -> tuple[str, str, str]:
    found = re.search(rf"\| toy \| {re.escape(metric)} \| (\d+) \| ([^|]+) \| (\d+ of \d+) \|", text)
    assert found, (metric, text)
    return found.group(1), found.group(2).strip(), found.group(3)


def test_pairs_runs_across_files_by_seed(tmp_path):
    main, variant = _files(tmp_path)
    result = CliRunner().invoke(bench_pairs.main, [f"--results={main}", f"--results={variant}",
                                                   "--pair=fakeclr-adaptive,ada"])
    assert result.exit_code == 0, result.output
    assert "## fakeclr-adaptive − ada, paired by seed" in result.output
    # Seeds 0 and 1 only (seed 2 of the variant is not done): 110 − 120 = −10, 134 − 130 = +4: −3.00 ± 9.90.
    assert _row(result.output, "final FID") == ("2", "-3.00 ± 9.90", "1 of 2")
    # PPL-W mean: 3 − 2 in both seeds: +1 ± 0, lower in neither.
    assert _row(result.output, "PPL-W mean") == ("2", "1.000 ± 0.000", "0 of 2")


def test_bad_inputs_are_one_line_errors(tmp_path):
    main, variant = _files(tmp_path)
    runner = CliRunner()
    cases = [
        ([f"--results={main}", "--pair=ada"], "--pair=ada: give two different methods"),
        ([f"--results={main}", "--pair=ada,ada"], "--pair=ada,ada: give two different methods"),
        ([f"--results={main}", "--pair=insgen,ada"], "no dataset has recorded runs of both; the files hold ada, adalinear"),
        ([f"--results={tmp_path / 'missing.json'}", "--pair=a,b"], "missing.json: cannot read it"),
    ]
    changed = json.loads((tmp_path / "main.json").read_text())
    changed["runs"]["toy/ada/seed0"]["final"]["fid"] = 99.0
    conflict = _write(tmp_path / "conflict.json", changed["runs"])
    cases.append(([f"--results={main}", f"--results={conflict}", "--pair=ada,adalinear"],
                  "conflict.json: run toy/ada/seed0 is also in an earlier --results file, recorded differently"))
    (tmp_path / "broken.json").write_text("{not json")
    cases.append(([f"--results={tmp_path / 'broken.json'}", "--pair=a,b"], "broken.json: not valid JSON"))
    for args, message in cases:
        result = runner.invoke(bench_pairs.main, args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, rows", [("--along-curve", True), ("--final-only", False)])
def test_along_curve_rows_are_optional(tmp_path, flag, rows):
    main, _ = _files(tmp_path)
    result = CliRunner().invoke(bench_pairs.main, [f"--results={main}", "--pair=adalinear,ada", flag])
    assert result.exit_code == 0, result.output
    assert ("| toy | final − best FID |" in result.output) == rows
    assert _row(result.output, "final FID") == ("1", "30.00 (n=1)", "0 of 1")  # 150 − 120, one seed

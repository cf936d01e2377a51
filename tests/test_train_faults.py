"""Runs that survive faults: SIGKILL anywhere then --resume=latest, a full disk at a snapshot, late-found bad
inputs refused before anything is written, a longer --kimg continuing the same run, progress within long ticks."""

from __future__ import annotations

import errno
import json
import pathlib
import pickle
import random
import re
import zipfile

import pytest

from train_helpers import (FAST, SLOW_SNAPSHOT_ENV, SLOW_SNAPSHOT_MARK, assert_snapshots_equal, finish, invoke,
                           load_snapshot, only_run_dir, read_stats, resolve, run_loop, snapshots,
                           start_train, status_lines, wait_for_line)
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)

RESUMED = re.compile(r"^resumed at kimg ([0-9.]+) from (\S+)", re.MULTILINE)


def _temp_files(run_dir: pathlib.Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*.tmp"))


def _kill(proc) -> None:
    proc.kill()
    proc.wait(timeout=60)


def test_sigkill_three_times_then_resume_latest_continues_one_run(tmp_path, emoji_zip):
    """Kill 1: during the first snapshot write (so the run has no snapshot: it restarts from zero in its own
    directory). Kill 2: during a later snapshot write. Kill 3: after a random number of ticks. Then finish."""
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none", "--workers=1",
            "--kimg=0.064", "--tick=0.008", "--snap=2"]  # a tick per step, a snapshot every 2 ticks
    resume = [*args, "--resume=latest"]

    proc, lines = start_train(args, **{SLOW_SNAPSHOT_ENV: "1"})
    wait_for_line(proc, lines, lambda line: SLOW_SNAPSHOT_MARK in line)
    _kill(proc)
    run_dir = only_run_dir(outdir)
    temps = _temp_files(run_dir)
    assert snapshots(run_dir) == [] and len(temps) == 1 and temps[0].startswith(".network-snapshot-000000.008.pkl.")

    proc, lines = start_train(resume, **{SLOW_SNAPSHOT_ENV: "2"})  # from zero; hangs in its 2nd snapshot (0.024)
    wait_for_line(proc, lines, lambda line: SLOW_SNAPSHOT_MARK in line)
    _kill(proc)
    assert [p.name for p in snapshots(run_dir)] == ["network-snapshot-000000.008.pkl"]
    assert [name.split(".pkl.")[0] for name in _temp_files(run_dir)] == [".network-snapshot-000000.024"]  # 1st gone

    ticks = random.Random(17).randint(1, 3)  # a random point of plain training
    proc, lines = start_train(resume)
    seen = wait_for_line(proc, lines, lambda line: line.startswith("resumed at kimg"))
    for _ in range(ticks):
        wait_for_line(proc, lines, lambda line: line.startswith("tick "), seen)
    _kill(proc)  # (right after a status line: possibly inside that tick's snapshot write)

    proc, lines = start_train(resume)
    output = finish(proc, lines, [])
    assert proc.returncode == 0 and "Traceback" not in output, output

    assert only_run_dir(outdir) == run_dir and _temp_files(run_dir) == [] and not (run_dir / ".train.lock").exists()
    log = (run_dir / "log.txt").read_text()
    restarts = RESUMED.findall(log)
    assert [source for _, source in restarts[:2]] == ["zero", "network-snapshot-000000.008.pkl"]
    kimgs = [float(kimg) for kimg, _ in restarts]
    assert len(restarts) == 3 and kimgs[0] == 0 and kimgs == sorted(kimgs) and kimgs[2] >= 0.008, restarts
    names = [p.name for p in snapshots(run_dir)]
    assert len(names) == len(set(names)) and names[-1] == "network-snapshot-000000.064.pkl", names
    assert load_snapshot(run_dir / names[-1])["resume_state"]["cur_nimg"] == 64
    stats = read_stats(run_dir)  # every line parses
    assert stats[-1]["Progress/kimg"]["mean"] == pytest.approx(0.064)
    last_run = log.split("resumed at kimg")[-1]
    assert status_lines(last_run)[0].startswith(f"tick {round(kimgs[2] / 0.008)} ")  # the tick counter continues


def test_raising_kimg_then_resume_latest_continues_the_same_run(tmp_path, emoji_zip, small_grid):
    straight = tmp_path / "straight"
    args = [f"--data={emoji_zip}", *FAST, "--target=0"]
    assert invoke(f"--outdir={straight}", *args, "--kimg=0.032").exit_code == 0
    outdir = tmp_path / "runs"
    assert invoke(f"--outdir={outdir}", *args, "--kimg=0.016").exit_code == 0
    result = invoke(f"--outdir={outdir}", *args, "--kimg=0.032", "--resume=latest")
    assert result.exit_code == 0, result.output
    assert "Duration changed:    0.016 -> 0.032 kimg (no schedule depends on it)" in result.output

    run_dir = only_run_dir(outdir)
    assert run_dir.name == "00000-emoji32-tiny-kimg0.016-target0"  # the name the run was started with
    opts = json.loads((run_dir / "training_options.json").read_text())
    assert opts["total_kimg"] == 0.032 and opts["resume_kind"] == "exact" and opts["continued_run"] is True
    assert opts["resume_pkl"] == str(run_dir / "network-snapshot-000000.016.pkl")
    assert_snapshots_equal(load_snapshot(snapshots(only_run_dir(straight))[-1]), load_snapshot(snapshots(run_dir)[-1]))

    # A finished run: nothing to do, nothing written.
    before = (run_dir / "log.txt").read_text()
    result = invoke(f"--outdir={outdir}", *args, "--kimg=0.032", "--resume=latest")
    assert result.exit_code == 0 and "Nothing to do:" in result.output and "raise --kimg" in result.output
    assert (run_dir / "log.txt").read_text() == before


def test_a_longer_kimg_re_times_the_schedules_that_depend_on_it(tmp_path, emoji_zip):
    """FakeCLR's ADA-Linear ramp and diversity-aware queue follow --kimg; the start block says so."""
    from training import launch

    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--method=fakeclr", "--fqs_schedule=linear"]
    opts, run_dir = resolve(*args, "--kimg=0.016")
    launch.create_run_dir(opts, run_dir)  # a run killed before its first snapshot
    result = invoke(*args, "--kimg=0.5", "--resume=latest", "-n")
    assert result.exit_code == 0, result.output
    assert ("Duration changed:    0.016 -> 0.5 kimg (ADA-Linear's p ramp and the diversity-aware fake queue "
            "re-timed to the new total)") in result.output
    assert "continuing this run directory from zero (it has no snapshot yet)" in result.output
    assert f"Output directory:    {run_dir}" in result.output


def _write_zip(source: pathlib.Path, dest: pathlib.Path, replace_last: bytes) -> pathlib.Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        names = sorted(n for n in src.namelist() if n.endswith(".png"))
        for name in src.namelist():
            out.writestr(name, replace_last if name == names[-1] else src.read(name))
    return dest


def _gray_png() -> bytes:
    import io

    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.new("L", (32, 32), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_late_found_problems_fail_in_dry_run_and_create_no_run_dir(tmp_path, emoji_zip):
    import datetime

    refused = tmp_path / "refused.pkl"
    refused.write_bytes(pickle.dumps({"G_ema": datetime.date(2020, 1, 1)}, protocol=4))  # a global not allowed
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle.dumps({"G": list(range(1000))}, protocol=4)[:50])
    corrupt = _write_zip(emoji_zip, tmp_path / "corrupt.zip", b"\x89PNG\r\n\x1a\n garbage")
    gray = _write_zip(emoji_zip, tmp_path / "mixed.zip", _gray_png())
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [  # (options, what the one error line must name)
        ([f"--data={emoji_zip}", f"--resume={refused}"], str(refused)),
        ([f"--data={emoji_zip}", f"--resume={truncated}"], str(truncated)),
        ([f"--data={corrupt}"], "cannot decode"),
        ([f"--data={gray}"], "has shape [1, 32, 32]"),
    ]
    outdir = tmp_path / "runs"
    for extra, named in cases:
        for dry_run in (["-n"], []):
            result = invoke(f"--outdir={outdir}", "--cfg=tiny", "--metrics=none", *extra, *dry_run)
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert result.exit_code == 1 and len(errors) == 1 and named in errors[0], (extra, result.output)
            assert "Traceback" not in result.output and "Training options:" not in result.output
            assert not outdir.exists(), extra
    for dry_run in (["-n"], []):
        result = invoke(f"--outdir={a_file / 'runs'}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none", *dry_run)
        assert result.exit_code == 1 and result.output.startswith(f"Error: --outdir={a_file / 'runs'}: "), result.output
        assert "is a file, not a directory" in result.output


def test_enospc_at_a_snapshot_keeps_the_previous_one_and_prints_the_resume_hint(tmp_path, emoji_zip, small_grid,
                                                                               monkeypatch):
    from dnnlib.util import atomic_write
    from training import network_pickle

    original = network_pickle.save_network_pkl
    calls = [0]

    def disk_full_at_the_second(path, data):
        calls[0] += 1
        if calls[0] == 1:
            return original(path, data)
        with atomic_write(path, "wb") as f:  # half a file in the temp name, then the disk is full
            f.write(b"\x80\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(network_pickle, "save_network_pkl", disk_full_at_the_second)
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.032", "--tick=0.008"]
    result = invoke(*args)
    run_dir = only_run_dir(outdir)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: {run_dir / 'network-snapshot-000000.016.pkl'}: cannot write (No space left on device); "
                      f"free space, then --resume=latest"], result.output
    assert [p.name for p in snapshots(run_dir)] == ["network-snapshot-000000.008.pkl"] and _temp_files(run_dir) == []
    assert load_snapshot(snapshots(run_dir)[0])["resume_state"]["cur_nimg"] == 8

    monkeypatch.setattr(network_pickle, "save_network_pkl", original)  # space freed: the hint works
    result = invoke(*args, "--resume=latest")
    assert result.exit_code == 0, result.output
    assert only_run_dir(outdir) == run_dir and load_snapshot(snapshots(run_dir)[-1])["resume_state"]["cur_nimg"] == 32


def test_a_long_tick_prints_progress_and_the_status_line_an_eta(tmp_path, emoji_zip, small_grid, capsys):
    opts, _ = resolve(f"--outdir={tmp_path}", f"--data={emoji_zip}", *FAST, "--kimg=0.032", "--tick=1")
    opts.progress_sec = 0  # every step of the long tick (60 s by default)
    run_loop(opts)
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("... kimg")]
    # Tick 0 ends after step 1; steps 2 and 3 are inside tick 1 (1.008 kimg long, cut by --kimg to 0.032); step 4
    # ends the run.
    assert [line.split(",")[0] for line in progress] == ["... kimg 0.016 (tick 1 ends at 0.032)",
                                                         "... kimg 0.024 (tick 1 ends at 0.032)"], out
    assert all(re.search(r", [0-9.]+ img/s$", line) and float(line.split(", ")[-1].split()[0]) > 0 for line in progress)
    first, last = status_lines(out)
    assert re.search(r" eta (\d+[smhd] ?)+$", first) and first.split(" eta ")[1] != "0s", first
    assert last.endswith(" eta 0s") and " kimg 0.032 " in last

"""--stop-kimg: stop a run part-way through its --kimg schedule, then continue it exactly.

A shorter --kimg is not the same thing: ADA-Linear's p ramp and FakeCLR's shrinking fake queue are timed over
--kimg, so the first 32 images of a 64-image schedule differ from a 32-image run."""

from __future__ import annotations

import json

import pytest

from train_helpers import assert_snapshots_equal, invoke, load_snapshot, only_run_dir, snapshots
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)

# One step per tick, a snapshot per tick; ADA-Linear updates p every 4 steps, so 4 steps move it.
ARGS = ["--cfg=tiny", "--tick=0.008", "--snap=1", "--metrics=none", "--workers=1", "--method=fakeclr"]


def _snapshot_at(run_dir, kimg: float) -> dict:
    path = run_dir / f"network-snapshot-{kimg:010.3f}.pkl"  # e.g. network-snapshot-000000.032.pkl
    assert path.exists(), [p.name for p in snapshots(run_dir)]
    return load_snapshot(path)


def test_stop_then_continue_equals_the_straight_run(tmp_path, emoji_zip, small_grid):
    data = f"--data={emoji_zip}"
    straight = tmp_path / "straight"
    assert invoke(f"--outdir={straight}", data, *ARGS, "--kimg=0.064").exit_code == 0

    outdir = tmp_path / "stopped"
    result = invoke(f"--outdir={outdir}", data, *ARGS, "--kimg=0.064", "--stop-kimg=0.032")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(outdir)
    assert snapshots(run_dir)[-1].name == "network-snapshot-000000.032.pkl"  # it stopped at 32 images, not 64
    opts = json.loads((run_dir / "training_options.json").read_text())
    assert opts["total_kimg"] == 0.064 and opts["stop_kimg"] == 0.032
    stopped = _snapshot_at(run_dir, 0.032)
    assert_snapshots_equal(_snapshot_at(only_run_dir(straight), 0.032), stopped)  # the schedule's first half
    assert float(stopped["augment_pipe"].p) > 0  # ADA-Linear's ramp has moved, so the check above means something

    # Continued without --stop-kimg: the rest of the schedule, in the same directory, equal to the straight run.
    result = invoke(f"--outdir={outdir}", data, *ARGS, "--kimg=0.064", "--resume=latest")
    assert result.exit_code == 0, result.output
    assert only_run_dir(outdir) == run_dir
    assert_snapshots_equal(_snapshot_at(only_run_dir(straight), 0.064), _snapshot_at(run_dir, 0.064))


def test_a_shorter_kimg_is_not_the_same_as_stopping(tmp_path, emoji_zip, small_grid):
    """Why the option exists: with --kimg=0.032 the ramp reaches its target in half the images."""
    short, stopped = tmp_path / "short", tmp_path / "stopped"
    assert invoke(f"--outdir={short}", f"--data={emoji_zip}", *ARGS, "--kimg=0.032").exit_code == 0
    assert invoke(f"--outdir={stopped}", f"--data={emoji_zip}", *ARGS, "--kimg=0.064",
                  "--stop-kimg=0.032").exit_code == 0
    p_short = float(_snapshot_at(only_run_dir(short), 0.032)["augment_pipe"].p)
    p_stopped = float(_snapshot_at(only_run_dir(stopped), 0.032)["augment_pipe"].p)
    assert p_short == pytest.approx(2 * p_stopped) and p_stopped > 0  # p = target * nimg / (1000 * --kimg)


def test_a_run_at_its_stop_has_nothing_to_do(tmp_path, emoji_zip, small_grid):
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *ARGS, "--kimg=0.064", "--stop-kimg=0.016"]
    assert invoke(*args).exit_code == 0
    log = only_run_dir(outdir) / "log.txt"
    before = log.read_text()
    result = invoke(*args, "--resume=latest")
    assert result.exit_code == 0 and "Nothing to do:" in result.output and "raise --stop-kimg" in result.output
    assert log.read_text() == before


@pytest.mark.parametrize("extra, message", [
    (["--stop-kimg=0"], "--stop-kimg=0: must be positive"),
    (["--stop-kimg=0.1", "--kimg=0.064"], "--stop-kimg=0.1 is past the end of the schedule (--kimg=0.064)"),
])
def test_bad_stop_kimg_is_a_one_line_error_before_anything_is_written(tmp_path, emoji_zip, extra, message):
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", *ARGS, *extra)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not outdir.exists() or not any(outdir.iterdir())

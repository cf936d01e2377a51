"""train_bench.py --baseline-commit: the temporary worktree and the per-round ratios (no training run)."""

import os
import subprocess

import pytest

from benchmarks import baseline_compare


def _worktrees() -> str:
    return subprocess.run(["git", "-C", baseline_compare.ROOT, "worktree", "list"], capture_output=True,
                          text=True, check=True).stdout


def test_old_worktree_is_created_and_removed():
    with baseline_compare.old_worktree("HEAD") as tree:
        assert os.path.isfile(os.path.join(tree, "benchmarks", "train_bench.py"))
        assert tree in _worktrees()
    assert not os.path.exists(tree) and tree not in _worktrees()


def test_bad_commit_is_a_one_line_error():
    with pytest.raises(SystemExit) as info:
        with baseline_compare.old_worktree("no-such-revision-xyz"):
            pass
    message = str(info.value)
    assert "--baseline-commit=no-such-revision-xyz" in message and "\n" not in message


def test_method_cost_per_round_and_side():
    rows = [dict(round=0, config="tiny/ada/auto/plain", old_img_per_s=40.0, new_img_per_s=60.0),
            dict(round=0, config="tiny/fakeclr/auto/plain", old_img_per_s=30.0, new_img_per_s=50.0),
            dict(round=1, config="tiny/ada/auto/plain", old_img_per_s=40.0, new_img_per_s=60.0)]  # no fakeclr: no line
    assert baseline_compare.method_cost_lines(rows) == ["  round 0 tiny/auto/plain: time fakeclr/ada  old 1.333  new 1.200"]

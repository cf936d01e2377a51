"""The add-on methods resume exactly: a run stopped after 6 steps and resumed equals an uninterrupted 8-step run
(weights, optimisers, the methods' own state: LeCam's anchors, APA's p and pending signs; the RNG streams
that DiffAugment and APA draw from). Same protocol as test_train_resume.py."""

from __future__ import annotations

import pytest

from train_helpers import (FAST, assert_snapshots_equal, invoke, load_snapshot, resolve, run_dirs, run_loop,
                           snapshots, stop_after)
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


@pytest.mark.parametrize("method", [("--method=ada+lecam", "--lecam_weight=0.3"), ("--method=diffaugment",),
                                    ("--method=apa", "--apa_target=0", "--apa_kimg=0.1")])
def test_add_on_method_resumes_exactly(tmp_path, emoji_zip, small_grid, method):
    args = [f"--outdir={tmp_path / 'runs'}", f"--data={emoji_zip}", *FAST, "--kimg=0.064", *method]
    assert invoke(*args).exit_code == 0  # A: 8 steps
    opts, b_dir = resolve(*args)
    assert run_loop(opts, abort_fn=stop_after(6))["stopped_early"]  # B: 6 steps
    result = invoke(*args, "--resume=latest")  # C: B continued to 8 steps
    assert result.exit_code == 0, result.output
    a_dir, c_dir = run_dirs(tmp_path / "runs")
    a, c = (load_snapshot(snapshots(d)[-1]) for d in (a_dir, c_dir))
    assert c["resume_state"]["cur_nimg"] == 64
    assert_snapshots_equal(a, c)
    state = a["resume_state"]["hook"]
    if "lecam" in method[0]:
        assert state["updates"] == 8 and float(abs(state["ema"]).sum()) > 0
    if "apa" in method[0]:
        assert state["p"] > 0  # p moved, and C continued it

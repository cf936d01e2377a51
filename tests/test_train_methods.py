"""Every --method trains a few steps through train.py and resumes exactly from an explicit snapshot path.

Per method: run A trains 8 steps; run B (same options) stops after 4 steps (the abort hook, as a
SIGTERM would); run C continues B with --resume=<B's snapshot>. A and C must hold identical
networks, optimiser states, ADA p and method state (queues, momentum heads, D_ema). The stop
lies on an ADA update (every 4 steps), see test_train_resume.py for why.
"""

from __future__ import annotations

import pytest
import torch

from train_helpers import (FAST, assert_snapshots_equal, invoke, load_snapshot, read_stats, resolve, run_dirs,
                           run_loop, snapshots, stop_after)
from train_helpers import emoji_zip, labelled_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


def _tensors(tree, prefix=""):
    """{dotted name: tensor} of a nested state dict."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@pytest.mark.parametrize("method", ["ada", "adalinear", "insgen", "fakeclr", "contragan"])
def test_method_trains_and_resumes_exactly(tmp_path, emoji_zip, labelled_zip, small_grid, method):
    outdir = tmp_path / "runs"
    data = [f"--data={labelled_zip}", "--cond=True"] if method == "contragan" else [f"--data={emoji_zip}"]
    args = [f"--outdir={outdir}", *data, *FAST, "--kimg=0.064", f"--method={method}"]

    result = invoke(*args)
    assert result.exit_code == 0, result.output
    opts, _ = resolve(*args)
    assert run_loop(opts, abort_fn=stop_after(4))["cur_nimg"] == 32
    a_dir, b_dir = run_dirs(outdir)
    b_snapshot = snapshots(b_dir)[-1]
    result = invoke(*args, f"--resume={b_snapshot}")
    assert result.exit_code == 0, result.output
    c_dir = run_dirs(outdir)[-1]
    assert c_dir.name.endswith(f"-tiny-kimg0.064-resumecustom-{method}")

    a, b, c = (load_snapshot(snapshots(d)[-1]) for d in (a_dir, b_dir, c_dir))
    assert a["resume_state"]["cur_nimg"] == c["resume_state"]["cur_nimg"] == 64
    assert_snapshots_equal(a, c)

    hook_a, hook_b = _tensors(a["resume_state"]["hook"]), _tensors(b["resume_state"]["hook"])
    p_a, p_b = float(a["augment_pipe"].p), float(b["augment_pipe"].p)
    if method in ("adalinear", "fakeclr"):  # ADA-Linear: p = 0.6 x kimg done / total kimg
        assert p_b == pytest.approx(0.3) and p_a == pytest.approx(0.6)
    if method in ("ada", "adalinear"):
        assert hook_a == {}
    else:  # the method's state travels in the snapshot and changed between step 4 and step 8
        assert hook_a and hook_a.keys() == hook_b.keys()
        changed = [name for name in hook_a if hook_a[name].is_floating_point()
                   and not torch.equal(hook_a[name], hook_b[name])]
        assert changed, sorted(hook_a)
        for name, tensor in hook_a.items():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), name
    if method == "fakeclr":  # the forgetting factor's size is in stats.jsonl: paper mode, m_i sum to 1
        margin = read_stats(a_dir)[-1]["Loss/contrastive/fake_margin_mean"]["mean"]
        assert 1 / a["resume_state"]["hook"]["modules"]["fake_queue"]["_extra_state"]["capacity"] <= margin <= 1 / 8
    if method == "contragan":
        assert a["G"].c_dim == 3 and a["D"].c_dim == 0  # StudioGAN arrangement: the label reaches D through 2C only

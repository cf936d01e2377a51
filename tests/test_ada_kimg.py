"""--ada-kimg: ADA's adjustment speed reaches the loop, moves p exactly by the formula, and resumes sensibly.

The formula (stylegan2-ada, training loop): every ada_interval iterations
    p <- max(0, p + sign(r_t - target) * batch * ada_interval / (ada_kimg * 1000)).
"""

from __future__ import annotations

import pytest
import torch

from train_helpers import FAST, invoke, resolve, run_dirs
from train_helpers import emoji_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


def _trainer(*args):
    from training.training_loop import Trainer

    opts, _ = resolve(*args)
    opts.run_dir = None  # no grids, logs or snapshots
    opts.data_loader_kwargs.num_workers = 0
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    trainer.setup()
    return trainer


def _adjustments(trainer, steps: int, start_p: float) -> list[tuple[float, float, float]]:
    """(p before, r_t, p after) of every ADA adjustment within `steps` iterations."""
    trainer.augment_pipe.p.fill_(start_p)  # away from the floor at 0, so both directions show
    seen, before = [], start_p
    for _ in range(steps):
        trainer.train_step()
        if trainer.batch_idx % trainer.training_options.ada_interval == 0:
            after = float(trainer.augment_pipe.p)
            seen.append((before, trainer.ada.last_signal, after))
            before = after
    return seen


@pytest.mark.parametrize("ada_kimg, step", [(1, 8 * 4 / 1000), (2.5, 8 * 4 / 2500)])  # batch 8, interval 4
def test_ada_kimg_sets_the_size_of_each_adjustment(tmp_path, emoji_zip, ada_kimg, step):
    trainer = _trainer(f"--outdir={tmp_path}", f"--data={emoji_zip}", *FAST, "--kimg=1", f"--ada-kimg={ada_kimg}")
    assert trainer.training_options.ada_kimg == ada_kimg and trainer.ada.kimg == ada_kimg
    seen = _adjustments(trainer, steps=12, start_p=0.5)
    assert len(seen) == 3
    for before, r_t, after in seen:
        direction = 1 if r_t > 0.6 else -1  # r_t is a mean of 32 signs: never exactly 0.6
        # float32 buffer: p is stored with ~6e-8 relative rounding
        assert after == pytest.approx(before + direction * step, abs=1e-6), (before, r_t, after)


def test_default_speed_is_500_kimg_and_transfer_is_100_unless_given(tmp_path, emoji_zip, monkeypatch):
    from training import preflight

    fetched = []  # the published network is fetched while options are checked; offline here, so only recorded
    monkeypatch.setattr(preflight, "fetch_resume_url", lambda option, url: fetched.append(url) or str(tmp_path / "x"))
    base = [f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=tiny"]
    opts, run_dir = resolve(*base)
    assert "ada_kimg" not in opts  # the loop's default (500) acts; older runs' options stay as they were
    opts, run_dir = resolve(*base, "--ada-kimg=20")
    assert opts.ada_kimg == 20 and run_dir.endswith("-tiny-adakimg20")
    assert resolve(*base, "--resume=ffhq256")[0].ada_kimg == 100  # upstream's transfer-learning speed
    assert resolve(*base, "--resume=ffhq256", "--ada-kimg=40")[0].ada_kimg == 40
    assert len(fetched) == 2 and all(url.endswith("ffhq-res256-mirror-paper256-noaug.pkl") for url in fetched)


@pytest.mark.parametrize("extra, message", [
    (["--ada-kimg=0"], "--ada-kimg=0: must be > 0"),
    (["--ada-kimg=-5"], "--ada-kimg=-5: must be > 0"),
    (["--aug=noaug", "--ada-kimg=10"], "--ada-kimg can only be given with --aug=ada"),
    (["--method=fakeclr", "--ada-kimg=10"], "ADA-Linear's ramp ignores it"),
])
def test_bad_ada_kimg_is_a_one_line_error(tmp_path, emoji_zip, extra, message):
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", "--cfg=tiny", "--metrics=none", *extra)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code != 0 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and not outdir.exists()


def test_continued_run_keeps_its_speed_unless_a_new_one_is_given(tmp_path, emoji_zip, small_grid):
    outdir = tmp_path / "runs"
    args = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.008", "--ada-kimg=30"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    continued = [f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.016", "--resume=latest"]
    opts, run_dir = resolve(*continued)
    assert run_dir == str(run_dirs(outdir)[0]) and opts.ada_kimg == 30 and opts.resume_kind == "exact"
    opts, run_dir = resolve(*continued, "--ada-kimg=10")  # not part of what is trained: still an exact continuation
    assert run_dir == str(run_dirs(outdir)[0]) and opts.ada_kimg == 10 and opts.resume_kind == "exact"

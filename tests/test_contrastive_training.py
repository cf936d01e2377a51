"""The contrastive methods inside the real Trainer / train.py: D_ema after a weights-only resume,
ContraGAN's D arrangements, and the start-of-run method lines (issue 16)."""

from __future__ import annotations

import pytest
import torch

from train_helpers import FAST, assert_modules_equal, invoke, load_snapshot, resolve, run_dirs, snapshots
from train_helpers import emoji_zip, labelled_zip, one_torch_thread, small_grid  # noqa: F401 (fixtures)


def _trainer(*args):
    from training.training_loop import Trainer

    opts, _ = resolve(*args)
    opts.run_dir = None  # no grids, logs or snapshots
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    trainer.setup()
    return trainer


@pytest.fixture(scope="module")
def ada_snapshot(tmp_path_factory, emoji_zip):
    outdir = tmp_path_factory.mktemp("ada")
    result = invoke(f"--outdir={outdir}", f"--data={emoji_zip}", *FAST, "--kimg=0.008")
    assert result.exit_code == 0, result.output
    return snapshots(run_dirs(outdir)[0])[-1]


@pytest.mark.parametrize("method", ["fakeclr", "insgen"])
def test_weights_only_resume_starts_d_ema_from_the_resumed_d(tmp_path, emoji_zip, ada_snapshot, method):
    trainer = _trainer(f"--outdir={tmp_path}", f"--data={emoji_zip}", *FAST, "--kimg=0.016", f"--method={method}",
                       f"--resume={ada_snapshot}")
    assert trainer.cur_nimg == 0  # weights only: an ADA snapshot has no FakeCLR / InsGen state
    resumed_D = load_snapshot(ada_snapshot)["D"]
    assert_modules_equal(trainer.D, resumed_D, "D")
    assert_modules_equal(trainer.method.D_ema, trainer.D, "D_ema")  # not the random D it was copied from at build
    for branch in (trainer.method.fake, trainer.method.real):
        if branch is not None:
            assert_modules_equal(branch.head.key_mlp, branch.head.query_mlp, "key_mlp")


def _labels(trainer, classes):
    return torch.nn.functional.one_hot(torch.tensor(classes), trainer.G.c_dim).float()


@pytest.mark.parametrize("mode", ["studiogan", "projection"])
def test_contragan_label_reaches_the_studiogan_d_only_through_2c(tmp_path, labelled_zip, mode):
    trainer = _trainer(f"--outdir={tmp_path}", f"--data={labelled_zip}", "--cond=True", *FAST, "--kimg=0.016",
                       "--method=contragan", *([] if mode == "studiogan" else ["--contragan_mode=projection"]))
    torch.manual_seed(0)
    img = torch.randn(4, 3, 32, 32)
    c_a, c_b = _labels(trainer, [0, 0, 1, 1]), _labels(trainer, [2, 1, 0, 2])
    with torch.no_grad():
        (logits_a, features), (logits_b, _) = (trainer.D(img, c, return_features=True) for c in (c_a, c_b))
        two_c = [trainer.method._term(features, c, frozen=True, stat="Loss/2C/test") for c in (c_a, c_b)]
    assert trainer.G.c_dim == 3
    assert abs(float(two_c[0]) - float(two_c[1])) > 1e-4  # 2C always sees the label
    if mode == "studiogan":
        assert trainer.D.c_dim == 0 and trainer.D.b4.out.weight.shape[0] == 1  # a 1-output adversarial head
        assert torch.equal(logits_a, logits_b)
        assert trainer.method.head.embed.in_features == trainer.D.b4.fc.weight.shape[0]  # embeds the fc output
    else:
        assert trainer.D.c_dim == 3 and (logits_a - logits_b).abs().max() > 1e-4  # projection conditioning


def test_fakeclr_readme_command_without_method_says_which_method_runs(tmp_path, emoji_zip):
    result = invoke(f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=paper256", "--batch=64", "--mirror=True",
                    "--ada_linear=True", "--dry-run")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "--method=fakeclr" in line]
    assert notes == ["Method: ADA-Linear without a contrastive head (--ada_linear given without --method; the "
                     "default --method is ada); to train FakeCLR add --method=fakeclr (InsGen: --method=insgen)"]
    assert "Method:              ada (ADA-Linear p ramp, no contrastive term)" in result.output


def test_status_block_names_the_few_shot_queue_schedule(tmp_path, emoji_zip):
    result = invoke(f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=paper256", "--batch=64", "--mirror=True",
                    "--subset=100", "--kimg=10000", "--method=fakeclr", "--forgetting=code", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "fake queue: 256 → 65 over 10000 kimg (linear)" in result.output
    assert "forgetting factor: code_constant" in result.output
    assert "--method=fakeclr" not in result.output.split("Training options:")[0]  # no note when --method is given
    opts, _ = resolve(f"--outdir={tmp_path}", f"--data={emoji_zip}", "--cfg=paper256", "--batch=64", "--mirror=True",
                      "--subset=100", "--kimg=10000", "--method=fakeclr")
    assert (opts.method_kwargs["fqs"], opts.method_kwargs["fqs_min"], opts.method_kwargs["fqs_schedule"]) == \
        (256, 65, "linear")  # what training_options.json stores


def test_heads_step_once_per_d_phase_after_d_and_enqueue_every_rounds_keys(tmp_path, emoji_zip):
    """Two accumulation rounds (batch_gpu 4 of batch 8): the loop steps the FakeCLR head once per D phase,
    right after D's step, and the queue receives the keys of both rounds (8, not the last round's 4)."""
    from training.training_loop import Trainer

    opts, _ = resolve(f"--outdir={tmp_path}", f"--data={emoji_zip}", *FAST, "--kimg=0.016", "--method=fakeclr")
    opts.run_dir = None
    opts.batch_gpu = opts.batch_size // 2
    trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
    trainer.setup()
    head_opt = trainer.method.fake.optimizer
    labels = {id(phase.opt): phase.name[0] for phase in trainer.phases}  # 'G' or 'D' (main and reg share one)
    labels[id(head_opt)] = "head"
    steps = []
    for opt in {id(o): o for o in [head_opt, *(phase.opt for phase in trainer.phases)]}.values():
        opt.step = lambda closure=None, _step=opt.step, _label=labels[id(opt)]: steps.append(_label) or _step()
    assert trainer.method.fake.queue.num_inserted == 0
    trainer.train_step()  # iteration 0: every phase runs, lazy regularisation included
    expected = [label for phase in trainer.phases
                for label in ([phase.name[0], "head"] if phase.name in ("Dmain", "Dboth") else [phase.name[0]])]
    assert steps == expected and steps.count("head") == 1
    assert trainer.method.fake.queue.num_inserted == opts.batch_size  # both rounds' keys, gathered once
    assert int(head_opt.state_dict()["state"][0]["step"]) == 1

"""APA add-on: the pseudo-real mixing, the p controller against hand-computed steps, and a short CPU training."""

import contextlib
import io

import pytest
import torch

from torch_utils import training_stats
from train_helpers import emoji_zip, labelled_zip  # noqa: F401 (fixtures)
from training.method import PhaseContext
from training.methods.apa import APA, APAOptions, pseudo_augment


def test_pseudo_augment_replaces_the_flagged_reals():
    real, pseudo = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    out = pseudo_augment(real, pseudo, torch.tensor([True, False, True]))
    assert out[:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0]


def test_real_input_uses_the_latest_gmain_fakes_with_probability_p():
    apa = APA(APAOptions(apa_p=0.0))
    real = torch.zeros(4, 3, 2, 2)
    fakes = torch.ones(4, 3, 2, 2, requires_grad=True)
    apa.loss_terms(PhaseContext(phase="Gmain", gain=1, run_G=None, run_D=None, gen_img=fakes))
    assert apa.pseudo is not None and not apa.pseudo.requires_grad  # detached: D's loss does not reach G
    assert apa.real_input(real, "Dmain") is real  # p = 0: unchanged
    apa.probability.p.fill_(1.5)  # p > 1 acts as 1 (no upper clamp)
    assert (apa.real_input(real, "Dreg") == 1).all()  # also in the lazy R1 pass
    apa.pseudo = torch.ones(4000, 1, 1, 1)
    apa.probability.p.fill_(0.25)
    torch.manual_seed(0)
    share = float(apa.real_input(torch.zeros(4000, 1, 1, 1), "Dmain").mean())
    assert abs(share - 0.25) < 0.03  # Bernoulli(0.25) over 4000 draws: sd 0.0068, bound ~4.4 sd


def test_controller_moves_p_by_the_hand_computed_step():
    training_stats.reset_all()
    apa = APA(APAOptions(apa_target=0.6, apa_kimg=0.1, apa_interval=2))
    [(controller, holder)] = apa.adaptive_probabilities()  # the loop updates it after each iteration

    def after_iteration(count: int) -> None:  # the loop's counters once `count` iterations of batch 8 are done
        controller.update(holder, batch_idx=count, cur_nimg=8 * count, batch_size=8)

    step = 8 * 2 / (0.1 * 1000)  # batch x interval / (kimg x 1000) = 0.16
    training_stats.report("Loss/signs/real", torch.tensor([1.0, 1.0, 1.0, -1.0]))  # mean 0.5 < 0.6
    after_iteration(1)  # not an adjustment (interval 2)
    assert apa.p == 0.0
    training_stats.report("Loss/signs/real", torch.tensor([1.0, 1.0, 1.0, 1.0]))  # over both: 7/8 > 0.6
    after_iteration(2)
    assert apa.p == pytest.approx(step)
    training_stats.report("Loss/signs/real", torch.tensor([-1.0] * 8))
    after_iteration(3)
    training_stats.report("Loss/signs/real", torch.tensor([-1.0] * 8))
    after_iteration(4)
    assert apa.p == 0.0  # floored at 0
    with pytest.raises(ValueError, match="--apa_target=1.5"):
        APAOptions(apa_target=1.5)


def test_apa_trains_on_cpu_and_moves_p(emoji_zip, labelled_zip):
    from golden_record import golden_options, torch_settings
    from training.training_loop import Trainer
    opts = golden_options("adalinear", emoji_zip, labelled_zip,
                          extra=("--method=apa", "--apa_target=0", "--apa_kimg=0.1", "--apa_interval=1"))
    assert opts.get("ada_target") is None  # APA alone: --aug defaults to noaug
    training_stats.reset_all()
    with torch_settings(threads=1), contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
        trainer.setup()
        for _ in range(4):
            trainer.train_step()
    # target 0: every iteration whose mean sign(D(x')) is above 0 raises p by 8 / 100 = 0.08
    assert trainer.method.p > 0 and trainer.method.p == pytest.approx(round(trainer.method.p / 0.08) * 0.08)
    assert all(torch.isfinite(p).all() for p in trainer.D.parameters())
    ada_apa = golden_options("ada", emoji_zip, labelled_zip, extra=("--method=ada+apa",))
    assert ada_apa.ada_target == 0.6 and ada_apa.method_kwargs["addons"]["apa"]["apa_target"] == 0.6


def test_ada_and_apa_keep_two_p_values_under_distinct_names(emoji_zip, labelled_zip):
    """--method=ada+apa: ADA's p (the augment pipe's, stat Progress/augment, resume_state['ada']) and APA's p
    (resume_state['hook'], stat Progress/apa_p) are separate values moved by separate controllers."""
    from golden_record import golden_options, torch_settings
    from training.training_loop import Trainer
    opts = golden_options("ada", emoji_zip, labelled_zip, extra=(
        "--method=ada+apa", "--target=0", "--apa_target=0", "--apa_kimg=1", "--apa_interval=1"))
    training_stats.reset_all()
    reported = training_stats.Collector("Progress/apa_p")
    with torch_settings(threads=1), contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(opts, rank=0, device=torch.device("cpu"), abort_fn=None)
        trainer.setup()
        for _ in range(8):
            trainer.train_step()
    apa = trainer.method  # ada is the base (no Method of its own), APA the one add-on
    assert isinstance(apa, APA)
    ada_p, apa_p = float(trainer.augment_pipe.p), apa.p
    # target 0 for both: p rises at every adjustment whose mean sign is above 0, one per iteration here. ADA (the
    # golden --ada-kimg=0.1, interval 1): 8 / 100 = 0.08 a step; APA (--apa_kimg=1): 8 / 1000 = 0.008 a step.
    assert ada_p >= 0.08 and ada_p == pytest.approx(round(ada_p / 0.08) * 0.08)
    assert 0 < apa_p <= 8 * 0.008 + 1e-9 and apa_p == pytest.approx(round(apa_p / 0.008) * 0.008)
    state = trainer.resume_state()
    assert state["hook"]["p"] == apa_p and "pending_signs" in state["hook"]["controller"]  # APA's, under 'hook'
    assert set(state["ada"]) == {"pending_signs"}  # ADA's controller; its p travels in the snapshot's augment_pipe
    reported.update()
    assert reported.num("Progress/apa_p") == 8 and 0 < reported.mean("Progress/apa_p") <= apa_p  # its own stat name

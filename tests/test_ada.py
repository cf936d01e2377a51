"""ADA p controllers (adaptive, linear, fixed) and the lazy-regularisation phase builder."""

from __future__ import annotations

import pytest
import torch

from torch_utils import training_stats
from training.ada import AdaLinear, AdaptiveP, FixedP, make_ada_controller
from training.augment import AugmentPipe
from training.phases import build_phases, lazy_reg_opt_kwargs


@pytest.fixture(autouse=True)
def _fresh_stats():
    training_stats.reset_all()
    yield
    training_stats.reset_all()


def _pipe(p=0.0):
    pipe = AugmentPipe(xflip=1)
    pipe.p.fill_(p)
    return pipe


def _run(controller, pipe, iterations, real_sign, batch_size=64, start_idx=0):
    """Simulate the loop: D reports real signs, then the controller sees the advanced counters."""
    history = []
    for it in range(start_idx, start_idx + iterations):
        training_stats.report("Loss/signs/real", torch.full([batch_size], float(real_sign)))
        controller.update(pipe, batch_idx=it + 1, cur_nimg=(it + 1) * batch_size, batch_size=batch_size)
        history.append(float(pipe.p))
    return history


def test_ada_rises_at_the_documented_speed_when_d_overfits():
    pipe, ada = _pipe(), AdaptiveP(target=0.6, interval=4, kimg=500)
    history = _run(ada, pipe, 40, real_sign=1.0)
    step = 64 * 4 / 500_000  # p can move by 1 over 500 kimg
    expected = [step * ((i + 1) // 4) for i in range(40)]
    assert history == pytest.approx(expected, abs=1e-7)
    assert ada.last_signal == 1.0


def test_ada_goes_from_zero_to_one_in_ada_kimg():
    pipe, ada = _pipe(), AdaptiveP(target=0.6, interval=4, kimg=2)  # 2 kimg: 2000 / 256 = 7.8 updates
    history = _run(ada, pipe, 32, real_sign=1.0)
    assert history[4 * 7 - 1] < 1 <= history[4 * 8 - 1]


def test_ada_falls_when_signs_are_below_target_and_stops_at_zero():
    pipe, ada = _pipe(0.002), AdaptiveP(target=0.6, interval=4, kimg=500)
    history = _run(ada, pipe, 16, real_sign=-1.0)  # r_t = -1 < 0.6
    step = 64 * 4 / 500_000
    assert history[3] == pytest.approx(0.002 - step, abs=1e-7)
    assert history[7] == pytest.approx(0.002 - 2 * step, abs=1e-7)
    assert history[-1] == 0.0


def test_ada_mixed_signs_use_the_mean_over_the_interval():
    pipe, ada = _pipe(0.5), AdaptiveP(target=0.6, interval=4, kimg=500)
    for it in range(4):  # 3 iterations of +1, one of -1: r_t = 0.5 < 0.6 -> p falls
        training_stats.report("Loss/signs/real", torch.full([8], 1.0 if it < 3 else -1.0))
        ada.update(pipe, batch_idx=it + 1, cur_nimg=(it + 1) * 8, batch_size=8)
    assert ada.last_signal == pytest.approx(0.5)
    assert float(pipe.p) == pytest.approx(0.5 - 8 * 4 / 500_000)


def test_ada_resume_between_adjustments_carries_the_signs():
    """Stop after 2 of 4 iterations (signs +1, +1), resume, then two of -1: r_t must be 0, as uninterrupted."""
    signs = [1.0, 1.0, -1.0, -1.0]

    def feed(controller, pipe, iterations):
        for it in iterations:
            training_stats.report("Loss/signs/real", torch.full([8], signs[it]))
            controller.update(pipe, batch_idx=it + 1, cur_nimg=(it + 1) * 8, batch_size=8)

    whole_pipe, whole = _pipe(0.5), AdaptiveP(target=0.1, interval=4, kimg=500)
    feed(whole, whole_pipe, range(4))
    assert whole.last_signal == 0.0 and float(whole_pipe.p) < 0.5  # r_t = 0 < 0.1: p falls

    first_pipe, first = _pipe(0.5), AdaptiveP(target=0.1, interval=4, kimg=500)
    feed(first, first_pipe, range(2))
    state = first.state_dict()
    assert state["pending_signs"].tolist() == [16.0, 16.0, 16.0]  # [count, sum, sum of squares]
    assert first.state_dict()["pending_signs"].tolist() == [16.0, 16.0, 16.0]  # reading does not consume
    resumed_pipe, resumed = _pipe(0.5), AdaptiveP(target=0.1, interval=4, kimg=500)
    resumed.load_state_dict(state)
    feed(resumed, resumed_pipe, range(2, 4))
    assert resumed.last_signal == 0.0 and float(resumed_pipe.p) == float(whole_pipe.p)

    forgetful_pipe, forgetful = _pipe(0.5), AdaptiveP(target=0.1, interval=4, kimg=500)  # the old behaviour
    feed(forgetful, forgetful_pipe, range(2, 4))
    assert forgetful.last_signal == -1.0


def test_ada_without_statistics_keeps_p():
    pipe, ada = _pipe(0.3), AdaptiveP()
    ada.update(pipe, batch_idx=4, cur_nimg=256, batch_size=64)
    assert float(pipe.p) == pytest.approx(0.3)


def test_ada_linear_follows_its_schedule():
    pipe, lin = _pipe(), AdaLinear(target=0.6, total_kimg=10, interval=4)
    history = _run(lin, pipe, 200, real_sign=-1.0, batch_size=50)  # signs are ignored
    for i, p in enumerate(history):
        last_update_nimg = ((i + 1) // 4 * 4) * 50
        assert p == pytest.approx(0.6 * last_update_nimg / 10_000, abs=1e-7)
    assert history[99] == pytest.approx(0.3, abs=1e-7)  # half-way through training: half the target
    lin.update(pipe, batch_idx=4000, cur_nimg=10**9, batch_size=50)
    assert float(pipe.p) == pytest.approx(1.0)  # clamped


def test_fixed_p_never_changes_and_none_pipe_is_allowed():
    pipe = _pipe(0.25)
    _run(FixedP(), pipe, 8, real_sign=1.0)
    assert float(pipe.p) == pytest.approx(0.25)
    AdaptiveP().update(None, batch_idx=4, cur_nimg=4, batch_size=1)


def test_factory_and_errors():
    assert isinstance(make_ada_controller("ada", 0.6, False, 100, 500), AdaptiveP)
    assert isinstance(make_ada_controller("ada", 0.6, True, 100, 500), AdaLinear)
    assert isinstance(make_ada_controller("fixed", None, False, 100, 500), FixedP)
    assert isinstance(make_ada_controller("noaug", None, False, 100, 500), FixedP)
    with pytest.raises(ValueError, match="--ada_linear needs --aug=ada"):
        make_ada_controller("fixed", 0.6, True, 100, 500)
    with pytest.raises(ValueError, match="--target"):
        make_ada_controller("ada", 1.5, False, 100, 500)
    with pytest.raises(ValueError, match="--aug"):
        make_ada_controller("sometimes", 0.6, False, 100, 500)
    with pytest.raises(ValueError, match=r"--ada-kimg=0: must be > 0"):
        AdaptiveP(kimg=0)
    with pytest.raises(ValueError, match="ada_interval"):
        AdaLinear(total_kimg=10, interval=0)


def test_lazy_reg_opt_kwargs_scales_lr_and_betas():
    base = dict(class_name="torch.optim.Adam", lr=0.0025, betas=(0, 0.99), eps=1e-8)
    kwargs = lazy_reg_opt_kwargs(base, 16)
    assert kwargs.lr == pytest.approx(0.0025 * 16 / 17)
    assert kwargs.betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert kwargs.eps == 1e-8 and base["lr"] == 0.0025  # input untouched
    assert lazy_reg_opt_kwargs(base, None) == base
    with pytest.raises(ValueError, match="reg_interval"):
        lazy_reg_opt_kwargs(base, 0)


def test_build_phases_share_one_corrected_optimiser():
    module = torch.nn.Linear(3, 2)
    opt_kwargs = dict(class_name="torch.optim.Adam", lr=0.002, betas=(0, 0.99), eps=1e-8)
    phases = build_phases("G", module, opt_kwargs, reg_interval=4)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Greg", 4)]
    assert phases[0].opt is phases[1].opt
    group = phases[0].opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 0.8) and group["betas"][1] == pytest.approx(0.99 ** 0.8)
    both = build_phases("D", module, opt_kwargs, reg_interval=None, params=[module.weight])
    assert [(p.name, p.interval) for p in both] == [("Dboth", 1)]
    assert both[0].opt.param_groups[0]["lr"] == 0.002 and len(both[0].opt.param_groups[0]["params"]) == 1
    with pytest.raises(ValueError, match="class_name"):
        build_phases("G", module, dict(lr=1), 4)


def test_train_py_and_the_controllers_refuse_with_the_same_line():
    from training import ada_options

    cases = [(lambda: ada_options.check_target(1.5), lambda: AdaptiveP(target=1.5), "--target=1.5: must lie in [0, 1]"),
             (lambda: ada_options.check_ada_kimg(-5), lambda: AdaptiveP(kimg=-5), "--ada-kimg=-5: must be > 0"),
             (lambda: ada_options.check_ada_linear(True, "noaug"), lambda: make_ada_controller("noaug", 0.6, True),
              "--ada_linear needs --aug=ada (got --aug=noaug)")]
    for option_check, controller, start in cases:
        with pytest.raises(ValueError) as checked:
            option_check()
        with pytest.raises(ValueError) as built:
            controller()
        assert str(checked.value) == str(built.value) and str(checked.value).startswith(start)
    with pytest.raises(ValueError, match="ADA-Linear's ramp ignores it"):
        ada_options.check_ada_linear(True, "ada", ada_kimg=100)

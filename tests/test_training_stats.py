"""torch_utils.training_stats: per-interval moments for every collector, and a NaN that stays in its interval."""

from __future__ import annotations

import math

import pytest
import torch

from torch_utils import training_stats
from training.ada import AdaptiveP
from training.augment import AugmentPipe


@pytest.fixture(autouse=True)
def _fresh_stats():
    training_stats.reset_all()
    yield
    training_stats.reset_all()


def test_each_collector_sees_what_was_reported_since_its_own_last_update():
    early = training_stats.Collector("Test/.*")
    training_stats.report("Test/x", torch.tensor([1.0, 3.0]))
    late = training_stats.Collector("Test/.*")  # created after the first report: does not see it
    early.update()
    assert (early.num("Test/x"), early.mean("Test/x"), early.std("Test/x")) == (2, 2.0, 1.0)
    training_stats.report("Test/x", 10.0)
    assert late.pending("Test/x").tolist() == [1.0, 10.0, 100.0]  # pending does not consume ...
    late.update()
    assert (late.num("Test/x"), late.mean("Test/x")) == (1, 10.0)  # ... and the early report is not in it
    early.update()  # the gather made by `late` reached `early` too
    assert (early.num("Test/x"), early.mean("Test/x")) == (1, 10.0)


def test_keep_previous_holds_a_statistic_through_intervals_that_did_not_report_it():
    keep, fresh = training_stats.Collector("Test/.*"), training_stats.Collector("Test/.*", keep_previous=False)
    training_stats.report("Test/every16", 4.0)
    keep.update(), fresh.update()
    training_stats.report("Test/other", 1.0)
    keep.update(), fresh.update()
    assert keep.mean("Test/every16") == 4.0 and fresh.num("Test/every16") == 0 and math.isnan(fresh.mean("Test/every16"))


def test_a_nan_shows_in_its_interval_and_in_no_later_one():
    collector = training_stats.Collector("Test/.*", keep_previous=False)
    training_stats.report("Test/loss", torch.tensor([1.0, float("nan")]))
    collector.update()
    assert collector.num("Test/loss") == 2 and math.isnan(collector.mean("Test/loss"))
    training_stats.report("Test/loss", torch.tensor([2.0, 4.0]))
    collector.update()
    # With running totals (upstream's design) this interval would be NaN too, and every later one.
    assert (collector.num("Test/loss"), collector.mean("Test/loss"), collector.std("Test/loss")) == (2, 3.0, 1.0)


def test_ada_goes_on_adjusting_after_one_nan_logit():
    """A NaN D(real) logit gives a NaN sign; the adjustment that sees it leaves p alone (sign(NaN - target) is
    neither up nor down), and the next ones move p again as r_t says."""
    pipe, ada = AugmentPipe(xflip=1), AdaptiveP(target=0.6, interval=4, kimg=500)
    pipe.p.fill_(0.0)
    step = 8 * 4 / 500_000
    history, signals = [], []
    for it in range(12):
        signs = torch.full([8], 1.0)
        if it == 1:
            signs[0] = float("nan")
        training_stats.report("Loss/signs/real", signs)
        ada.update(pipe, batch_idx=it + 1, cur_nimg=(it + 1) * 8, batch_size=8)
        history.append(float(pipe.p))
        signals.append(ada.last_signal)
    # Adjustments at batches 4, 8, 12: the first saw the NaN (no move), the other two see r_t = 1 > 0.6 (up).
    assert math.isnan(signals[3]) and history[3] == 0.0
    assert signals[7] == signals[11] == 1.0  # with running totals these would stay NaN and p would never move
    assert history[7] == pytest.approx(step) and history[11] == pytest.approx(2 * step)

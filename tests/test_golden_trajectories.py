"""Golden trajectories: every method's short fixed-seed CPU training still ends at its recorded weights.

A refactor that keeps the numbers passes; any change of what is trained (a loss term, an optimiser
setting, the order of random draws, an augmentation) fails, naming the tensors that moved. The runs,
summaries and the re-recording command are in tests/golden_record.py; the rule for updating the
references is in docs/training.md ("Golden trajectories").
"""

from __future__ import annotations

import pytest

from golden_record import (GOLDEN_RUNS, GOLDEN_STEPS, deviations, golden_options, load_reference,
                           moved_deviations, summarize, torch_settings, train, worst)
from train_helpers import emoji_zip, labelled_zip  # noqa: F401 (fixtures)

# Measured with `python tests/golden_record.py --measure` (torch 2.13.0+cpu, numpy 2.4.6, this x86-64 CPU), worst over
# the six methods, against a 1-thread run: reruns deviate by 0 (bit-identical); 2 threads and oneDNN off (the native
# convolutions), standing in for another CPU's or library's summation order, by the figures below. Both together (native
# convolutions on 2 threads, a path this test never takes) send ada and adalinear onto another trajectory (values 3e-3,
# moved 0.044): not covered. Table and reasons: docs/training.md, "Golden trajectories".
# Final-value statistics in units of max(rms, 1) (golden_record.deviations): worst 1.66e-5 (adalinear, oneDNN off).
VALUES_TOLERANCE = 1.7e-4  # 10x
# Relative difference of each tensor's distance travelled (golden_record.moved_deviations): worst 1.49e-4 (contragan,
# 2 threads, a noise_strength scalar).
MOVED_TOLERANCE = 1.5e-3  # 10x
# lr x (1 + 1e-3) exceeds one of the two tolerances >= 26x in every method (ada: moved 0.21 = 140x, values 2.2e-3 =
# 13x); one more step >= 1600x (moved 2.46 or more); seed 1: values >= 4.6.
SENSITIVITY_MARGIN = 10


def _report(deviation: dict[str, float], limit: float, what: str) -> str:
    moved = sorted(((value, name) for name, value in deviation.items() if value > limit), reverse=True)
    lines = [f"{name}: {value:.3g}" for value, name in moved[:8]]
    return (f"{len(moved)} tensors deviate from the golden reference by more than {limit:g} ({what}):\n  "
            + "\n  ".join(lines) + "\nA deliberate numeric change re-records the reference in its own commit "
            "(python tests/golden_record.py --method=...; see docs/training.md, Golden trajectories).")


@pytest.mark.parametrize("method", list(GOLDEN_RUNS))
def test_training_follows_the_golden_trajectory(emoji_zip, labelled_zip, method):
    reference = load_reference(method)
    with torch_settings(threads=1):
        summary = summarize(train(golden_options(method, emoji_zip, labelled_zip)))
    values, moved = deviations(reference, summary), moved_deviations(reference, summary)
    assert max(values.values()) <= VALUES_TOLERANCE, _report(values, VALUES_TOLERANCE, "final values, rms units")
    assert max(moved.values()) <= MOVED_TOLERANCE, _report(moved, MOVED_TOLERANCE, "distance travelled, relative")
    assert len(values) == len(reference) > 100  # G, D, G_ema (and the method's modules) were all compared
    assert sum(entry.get("moved", 0) > 0 for entry in reference.values()) > 50  # and most of them trained


@pytest.mark.parametrize("change", ["lr", "one more step"])
def test_a_small_real_change_fails_the_comparison(emoji_zip, labelled_zip, change):
    """The tolerances are no blanket: a 0.1% learning-rate change, or a fifth step, is caught by far."""
    method = "ada"
    opts = golden_options(method, emoji_zip, labelled_zip)
    if change == "lr":
        for key in ("G_opt_kwargs", "D_opt_kwargs"):
            opts[key].lr *= 1 + 1e-3
    with torch_settings(threads=1):
        summary = summarize(train(opts, steps=GOLDEN_STEPS + (change == "one more step")))
    name, value = worst(moved_deviations(load_reference(method), summary))
    assert value > SENSITIVITY_MARGIN * MOVED_TOLERANCE, (change, name, value)

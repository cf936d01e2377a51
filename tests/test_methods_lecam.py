"""LeCam add-on: the formula against hand-computed values, option parsing, and a short CPU training."""

import pytest
import torch

from train_helpers import emoji_zip, labelled_zip  # noqa: F401 (fixtures)

from training.contrastive.presets import resolve_method
from training.method import PhaseContext
from training.methods.lecam import LeCam, LeCamOptions


def _ctx(phase, real, fake):
    return PhaseContext(phase=phase, gain=1.0, run_G=None, run_D=None,
                        real_logits=torch.tensor(real)[:, None], gen_logits=torch.tensor(fake)[:, None])


def test_lecam_penalty_and_zero_debiased_anchors_match_hand_computation():
    lecam = LeCam(LeCamOptions(lecam_weight=0.5, lecam_decay=0.99), torch.device("cpu"))
    # Step 1: debiased anchors = the batch means (0.8333, -0.25).
    # reals: relu(1.25)^2, relu(-0.25)^2, relu(2.25)^2 -> (1.5625 + 0 + 5.0625) / 3 = 2.208333
    # fakes: relu(0.8333 + 1)^2, relu(0.8333 - 0.5)^2 -> (3.361111 + 0.111111) / 2 = 1.736111; x 0.5
    term = lecam.loss_terms(_ctx("Dmain", [1.0, -0.5, 2.0], [-1.0, 0.5]))
    assert float(term) == pytest.approx(0.5 * (2.208333 + 1.736111), rel=1e-6)
    # Step 2: ema = 0.99 * (0.008333, -0.0025) + 0.01 * (0, 0.5) = (0.00825, 0.002525); / (1 - 0.99^2) = 0.0199
    # -> anchors (0.41457286, 0.12688442). Reals 0 sit below the fake anchor: no penalty (one-sided);
    # fakes: relu(0.41457)^2 = 0.171871, relu(0.41457 - 1) = 0 -> 0.0859355; x 0.5
    term = lecam.loss_terms(_ctx("Dboth", [0.0, 0.0, 0.0], [0.0, 1.0]))
    torch.testing.assert_close(lecam.anchors(), torch.tensor([0.41457286, 0.12688442]))
    assert float(term) == pytest.approx(0.5 * 0.0859355, rel=1e-5)
    # Not in G phases or the lazy R1 pass, and the anchors do not move there.
    assert lecam.loss_terms(_ctx("Gmain", [1.0], [1.0])) is None and lecam.loss_terms(_ctx("Dreg", [1.0], [1.0])) is None
    assert lecam.updates == 2


def test_lecam_gradient_flows_to_the_logits_only_through_the_penalty():
    lecam = LeCam(LeCamOptions(lecam_weight=1.0), torch.device("cpu"))
    real, fake = torch.tensor([[2.0], [0.0]], requires_grad=True), torch.tensor([[-2.0], [0.0]], requires_grad=True)
    ctx = PhaseContext(phase="Dmain", gain=1.0, run_G=None, run_D=None, real_logits=real, gen_logits=fake)
    lecam.loss_terms(ctx).backward()
    # anchors (1, -1) are constants: d/dr mean relu(r + 1)^2 = (r + 1) -> (3, 1); d/df mean relu(1 - f)^2 = -(1 - f) -> (-3, -1)
    torch.testing.assert_close(real.grad, torch.tensor([[3.0], [1.0]]))
    torch.testing.assert_close(fake.grad, torch.tensor([[-3.0], [-1.0]]))


def test_lecam_options_are_parsed_once_and_checked():
    opts = resolve_method("fakeclr+lecam", {"lecam_weight": 0.1}, dataset_size=100, mirror=False, batch=8)
    assert opts.addons == {"lecam": {"lecam_weight": 0.1, "lecam_decay": 0.99}} and opts.fake_head
    assert resolve_method("lecam", {}, dataset_size=100, mirror=False, batch=8).addons["lecam"]["lecam_weight"] == 3e-7
    with pytest.raises(ValueError, match="--lecam_weight: an option of the lecam add-on"):
        resolve_method("ada", {"lecam_weight": 0.1}, dataset_size=100, mirror=False, batch=8)
    with pytest.raises(ValueError, match=r"--lecam_decay=1.0: must lie in \[0, 1\)"):
        resolve_method("ada+lecam", {"lecam_decay": 1.0}, dataset_size=100, mirror=False, batch=8)
    with pytest.raises(ValueError, match="combines base methods"):
        resolve_method("ada+fakeclr", {}, dataset_size=100, mirror=False, batch=8)


def test_ada_plus_lecam_trains_on_cpu(emoji_zip, labelled_zip):
    from golden_record import golden_options, torch_settings, train
    opts = golden_options("ada", emoji_zip, labelled_zip, extra=("--method=ada+lecam", "--lecam_weight=0.3"))
    assert opts.method_kwargs["addons"] == {"lecam": {"lecam_weight": 0.3, "lecam_decay": 0.99}}
    with torch_settings(threads=1):
        end, _ = train(opts)
        plain, _ = train(golden_options("ada", emoji_zip, labelled_zip))
    assert all(torch.isfinite(t).all() for t in end.values())
    # The term reaches D (and only through D, G follows): same seed, different D weights than plain ADA.
    assert any(not torch.equal(end[n], plain[n]) for n in end if n.startswith("D."))

"""StyleGAN2Loss on tiny hand-built networks: loss values, R1, path length, style mixing, hooks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.augment import AugmentPipe
from training.loss import StyleGAN2Loss
from training.method import Method

Z_DIM, W_DIM, NUM_WS, RES = 4, 3, 4, 4


class TinyMapping(torch.nn.Module):
    """ws = tanh(z @ A) broadcast to NUM_WS; counts w_avg updates like the real mapping."""

    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn([Z_DIM, W_DIM]))
        self.num_ws = NUM_WS
        self.ema_updates = 0

    def forward(self, z, c, update_emas=False):
        self.ema_updates += int(update_emas)
        return torch.tanh(z @ self.A)[:, None, :].repeat(1, NUM_WS, 1)


class TinySynthesis(torch.nn.Module):
    """Linear in ws: img = sum_k ws[:, k] @ B[k] reshaped to [N, 1, RES, RES]."""

    def __init__(self):
        super().__init__()
        self.B = torch.nn.Parameter(torch.randn([NUM_WS, W_DIM, RES * RES]))

    def forward(self, ws):
        return torch.einsum("nkw,kwp->np", ws, self.B).reshape(-1, 1, RES, RES)


class LinearD(torch.nn.Module):
    """logits = <img, v> + b; features = the image itself (stands in for the 4x4 map)."""

    def __init__(self, channels=1):
        super().__init__()
        self.v = torch.nn.Parameter(torch.randn([channels * RES * RES]))
        self.b = torch.nn.Parameter(torch.randn([]))

    def forward(self, img, c, update_emas=False, return_features=False):
        logits = (img.flatten(1) @ self.v + self.b)[:, None]
        return (logits, img) if return_features else logits


@pytest.fixture(autouse=True)
def _fresh_stats():
    training_stats.reset_all()
    torch.manual_seed(0)
    yield
    training_stats.reset_all()


def _nets():
    return TinyMapping(), TinySynthesis(), LinearD()


def _loss(mapping, synthesis, D, **kwargs):
    kwargs.setdefault("style_mixing_prob", 0)
    return StyleGAN2Loss("cpu", mapping, synthesis, D, **kwargs)


def _batch(n=6):
    return torch.randn([n, 1, RES, RES]), torch.zeros([n, 0]), torch.randn([n, Z_DIM]), torch.zeros([n, 0])


def _grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _set_trainable(trainable, *frozen):
    for p in trainable.parameters():
        p.requires_grad_(True)
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


def _hand_forward(mapping, synthesis, z):
    return synthesis(torch.tanh(z @ mapping.A)[:, None, :].repeat(1, NUM_WS, 1))


def test_gmain_gradients_and_stats_equal_hand_computation():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(synthesis, D)
    mapping.A.requires_grad_(True)
    collector = training_stats.Collector("Loss/.*")
    _loss(mapping, synthesis, D).accumulate_gradients("Gmain", real, rc, z, gc, gain=1)
    got = {**_grads(mapping), **_grads(synthesis)}

    logits = D(_hand_forward(mapping, synthesis, z), gc)
    expected_loss = F.softplus(-logits).mean()
    grads = torch.autograd.grad(expected_loss, [mapping.A, synthesis.B])
    torch.testing.assert_close(got["A"], grads[0])
    torch.testing.assert_close(got["B"], grads[1])
    assert D.v.grad is None

    collector.update()
    assert collector.mean("Loss/G/loss") == pytest.approx(float(expected_loss.detach()), rel=1e-5)
    assert collector.mean("Loss/scores/fake") == pytest.approx(float(logits.detach().mean()), rel=1e-5)
    assert collector.num("Loss/signs/fake") == 6
    assert mapping.ema_updates == 1


def test_dmain_gradients_and_stats_equal_hand_computation():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(D, mapping, synthesis)
    collector = training_stats.Collector("Loss/.*")
    _loss(mapping, synthesis, D).accumulate_gradients("Dmain", real, rc, z, gc, gain=1)

    fake_logits, real_logits = D(_hand_forward(mapping, synthesis, z), gc), D(real, rc)
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    gv, gb = torch.autograd.grad(loss, [D.v, D.b])
    torch.testing.assert_close(D.v.grad, gv)
    torch.testing.assert_close(D.b.grad, gb)
    assert mapping.A.grad is None and synthesis.B.grad is None

    collector.update()
    expected_d = (F.softplus(fake_logits) + F.softplus(-real_logits)).mean()
    assert collector.mean("Loss/D/loss") == pytest.approx(float(expected_d.detach()), rel=1e-5)
    assert collector.mean("Loss/signs/real") == pytest.approx(float(real_logits.detach().sign().mean()), abs=1e-6)


@pytest.mark.parametrize("augment", [None, "xflip"])
def test_r1_equals_the_analytic_gradient_norm_of_a_linear_d(augment):
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(D, mapping, synthesis)
    pipe = AugmentPipe(xflip=1) if augment else None  # a flip permutes pixels: |grad| is unchanged
    collector = training_stats.Collector("Loss/.*")
    gamma, gain = 0.5, 16
    _loss(mapping, synthesis, D, r1_gamma=gamma, augment_pipe=pipe).accumulate_gradients(
        "Dreg", real, rc, z, gc, gain=gain)
    collector.update()
    norm2 = float(D.v.detach().square().sum())
    assert collector.mean("Loss/r1_penalty") == pytest.approx(norm2, rel=1e-5)
    assert collector.mean("Loss/D/reg") == pytest.approx(gamma / 2 * norm2, rel=1e-5)
    # d/dv [gain * gamma/2 * |v|^2] = gain * gamma * v; the bias has no R1 gradient.
    torch.testing.assert_close(D.v.grad, gain * gamma * D.v.detach())
    assert float(D.b.grad) == 0.0


def test_dboth_is_dmain_plus_dreg():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(D, mapping, synthesis)
    loss = _loss(mapping, synthesis, D, r1_gamma=2.0)
    loss.accumulate_gradients("Dmain", real, rc, z, gc, gain=1)
    loss.accumulate_gradients("Dreg", real, rc, z, gc, gain=1)
    separate = D.v.grad.clone()
    D.v.grad = None
    loss.accumulate_gradients("Dboth", real, rc, z, gc, gain=1)
    torch.testing.assert_close(D.v.grad, separate)


def _expected_pl_lengths(mapping, synthesis, z, noise):
    """|J^T y| per sample by hand: img is linear in ws, so d<img, y>/d ws[k] = B[k] @ y."""
    y = noise.flatten(1)  # [n, P]
    per_ws = torch.einsum("kwp,np->nkw", synthesis.B.detach(), y)
    return per_ws.square().sum(2).mean(1).sqrt()


def test_path_length_penalty_and_its_mean_follow_the_ema():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch(8)
    _set_trainable(synthesis, mapping, D)
    collector = training_stats.Collector("Loss/.*")
    loss = _loss(mapping, synthesis, D, pl_weight=2, pl_decay=0.01, pl_batch_shrink=2)
    pl_mean = 0.0
    for step in range(3):
        torch.manual_seed(100 + step)
        noise = torch.randn([4, 1, RES, RES]) / math.sqrt(RES * RES)  # what the loss draws next
        torch.manual_seed(100 + step)
        synthesis.B.grad = None
        loss.accumulate_gradients("Greg", real, rc, z, gc, gain=4)
        lengths = _expected_pl_lengths(mapping, synthesis, z[:4], noise)
        pl_mean = pl_mean + 0.01 * (float(lengths.mean()) - pl_mean)
        assert float(loss.pl_mean) == pytest.approx(pl_mean, rel=1e-5)
        collector.update()
        penalty = (lengths - float(loss.pl_mean)).square()
        assert collector.mean("Loss/pl_penalty") == pytest.approx(float(penalty.mean()), rel=1e-4)
        assert collector.mean("Loss/G/reg") == pytest.approx(2 * float(penalty.mean()), rel=1e-4)
    assert synthesis.B.grad is not None and torch.isfinite(synthesis.B.grad).all()


def test_path_length_gradient_equals_autograd_of_the_hand_formula():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch(8)
    _set_trainable(synthesis, mapping, D)
    loss = _loss(mapping, synthesis, D, pl_weight=2, pl_decay=0.5)
    torch.manual_seed(7)
    noise = torch.randn([4, 1, RES, RES]) / math.sqrt(RES * RES)
    torch.manual_seed(7)
    loss.accumulate_gradients("Greg", real, rc, z, gc, gain=4)
    B = synthesis.B.detach().clone().requires_grad_(True)
    lengths = torch.einsum("kwp,np->nkw", B, noise.flatten(1)).square().sum(2).mean(1).sqrt()
    pl_mean = torch.zeros([]).lerp(lengths.mean(), 0.5)  # not detached, as in the loss
    expected = torch.autograd.grad(4 * 2 * (lengths - pl_mean).square().mean(), [B])[0]
    torch.testing.assert_close(synthesis.B.grad, expected)


def test_pl_weight_zero_and_r1_zero_skip_their_phases():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(synthesis, mapping, D)
    _loss(mapping, synthesis, D, pl_weight=0).accumulate_gradients("Greg", real, rc, z, gc, gain=4)
    assert synthesis.B.grad is None
    _set_trainable(D, mapping, synthesis)
    _loss(mapping, synthesis, D, r1_gamma=0).accumulate_gradients("Dreg", real, rc, z, gc, gain=16)
    assert D.v.grad is None
    with pytest.raises(ValueError, match="unknown phase 'Gfoo'"):
        _loss(mapping, synthesis, D).accumulate_gradients("Gfoo", real, rc, z, gc, gain=1)
    with pytest.raises(ValueError, match="r1_gamma"):
        _loss(mapping, synthesis, D, r1_gamma=-1)


def test_style_mixing_draw_is_reused_exactly():
    mapping, synthesis, D = _nets()
    loss = _loss(mapping, synthesis, D, style_mixing_prob=1.0)
    z = torch.randn([5, Z_DIM])
    img, ws, mixing = loss.run_G(z, torch.zeros([5, 0]), return_mixing=True)
    z2, cutoff = mixing
    assert 1 <= cutoff < NUM_WS and z2.shape == z.shape
    torch.testing.assert_close(ws[:, :cutoff], mapping(z, None)[:, :cutoff])
    torch.testing.assert_close(ws[:, cutoff:], mapping(z2, None)[:, cutoff:])
    img2, ws2 = loss.run_G(z, torch.zeros([5, 0]), mixing=mixing)
    torch.testing.assert_close(img2, img)
    cutoffs = {loss.run_G(z, torch.zeros([5, 0]), return_mixing=True)[2][1] for _ in range(60)}
    assert cutoffs == set(range(1, NUM_WS))
    # No mixing: (None, num_ws), reusable as well.
    _, ws_plain, plain = _loss(mapping, synthesis, D, style_mixing_prob=0).run_G(z, None, return_mixing=True)
    assert plain == (None, NUM_WS)
    torch.testing.assert_close(loss.run_G(z, None, mixing=plain)[1], ws_plain)


class RecordingHook(Method):
    """Adds weight * mean(feature sum) in Dmain; records what it saw."""

    def __init__(self, weight):
        self.weight = weight
        self.seen = []

    def needs_features(self, phase):
        return phase == "Dmain"

    def loss_terms(self, ctx):
        self.seen.append(ctx)
        if ctx.phase != "Dmain":
            return None
        return self.weight * ctx.gen_logits.flatten() + 0 * ctx.gen_features.flatten(1).sum(1)


def test_hooks_receive_context_and_add_their_terms_before_the_single_backward():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    _set_trainable(D, mapping, synthesis)
    hook = RecordingHook(weight=0.25)
    loss = _loss(mapping, synthesis, D, method=hook)
    loss.accumulate_gradients("Dmain", real, rc, z, gc, gain=1)
    ctx = hook.seen[-1]
    assert ctx.phase == "Dmain" and ctx.gen_features is not None and ctx.real_features is not None
    assert ctx.gen_mixing == (None, NUM_WS) and ctx.gen_z is z and ctx.real_logits is not None
    fake_logits, real_logits = D(_hand_forward(mapping, synthesis, z), gc), D(real, rc)
    total = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean() + 0.25 * fake_logits.mean()
    torch.testing.assert_close(D.v.grad, torch.autograd.grad(total, [D.v])[0])
    # Gmain: features not requested, so the context carries none.
    _set_trainable(synthesis, D)
    loss.accumulate_gradients("Gmain", real, rc, z, gc, gain=1)
    assert hook.seen[-1].phase == "Gmain" and hook.seen[-1].gen_features is None
    with pytest.raises(TypeError, match="Method"):
        _loss(mapping, synthesis, D, method=object())


def test_augmentation_is_applied_to_fakes_and_reals_in_every_phase():
    mapping, synthesis, D = _nets()
    real, rc, z, gc = _batch()
    calls = []

    class CountingPipe(torch.nn.Module):
        def forward(self, img):
            calls.append(img.shape[0])
            return img.flip(3)

    _set_trainable(D, mapping, synthesis)
    _loss(mapping, synthesis, D, augment_pipe=CountingPipe()).accumulate_gradients("Dmain", real, rc, z, gc, gain=1)
    fake_logits, real_logits = D(_hand_forward(mapping, synthesis, z).flip(3), gc), D(real.flip(3), rc)
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    torch.testing.assert_close(D.v.grad, torch.autograd.grad(loss, [D.v])[0])
    _set_trainable(synthesis, D)
    _loss(mapping, synthesis, D, augment_pipe=CountingPipe()).accumulate_gradients("Gmain", real, rc, z, gc, gain=1)
    assert calls == [6, 6, 6]


def test_r1_through_the_full_geometric_pipe_uses_double_backward():
    mapping, synthesis, _ = _nets()
    real = torch.randn([2, 3, 16, 16])
    conv = torch.nn.Conv2d(3, 1, 3)

    class ConvD(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, img, c, update_emas=False, return_features=False):
            feat = torch.nn.functional.softplus(self.conv(img))
            logits = feat.mean(dim=(1, 2, 3))[:, None]
            return (logits, feat) if return_features else logits

    D = ConvD()
    pipe = AugmentPipe(scale=1, rotate=1, brightness=1)
    loss = StyleGAN2Loss("cpu", mapping, synthesis, D, augment_pipe=pipe, r1_gamma=1)
    loss.accumulate_gradients("Dreg", real, torch.zeros([2, 0]), torch.randn([2, Z_DIM]), torch.zeros([2, 0]), gain=16)
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert float(conv.weight.grad.abs().sum()) > 0

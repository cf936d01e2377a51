"""The method hooks on tiny stand-in G/D: heads, momentum copies, training, zero weights, resume, mixing."""

import copy
import io

import pytest
import torch

from contrastive_standins import StandInLoss, TinyD, TinyG, train_steps
from training.contrastive.hooks import ContraGAN2CHook, FakeCLRHook, InsGenHook
from torch_utils.misc import ema_update_
from training.contrastive.head import MomentumProjectionHead, make_head_optimizer, make_momentum_copy
from training.contrastive import resolve_method
from training.method_stack import build_method

OPT = dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8)
SMALL = dict(head_hidden_dim=16, head_out_dim=8, d_embed_dim=8)


def _options(method, batch=4, **overrides):
    return resolve_method(method, {**SMALL, **overrides}, dataset_size=200, mirror=False, batch=batch)


def _build(options, G, D, total_kimg=0.05, batch=4):
    return build_method(options, G, D, torch.device("cpu"), OPT, OPT, 4, 16, total_kimg, batch)


def _nets(c_dim=0, seed=1):
    torch.manual_seed(seed)
    return TinyG(c_dim=c_dim), TinyD(c_dim=c_dim)


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# -- heads and momentum copies ---------------------------------------------------

def test_head_projects_to_unit_vectors_and_key_follows_by_ema():
    head = MomentumProjectionHead(16, 32, 8, momentum=0.9)
    with torch.no_grad():
        for p in head.query_mlp.parameters():
            p.add_(1.0)
    key_before = [p.clone() for p in head.key_mlp.parameters()]
    q, k = head(torch.randn(5, 16, 4, 4), torch.randn(5, 16, 4, 4))
    assert q.shape == (5, 8) and k.shape == (5, 8) and not k.requires_grad
    torch.testing.assert_close(q.norm(dim=1), torch.ones(5))
    for kb, ka, qp in zip(key_before, head.key_mlp.parameters(), head.query_mlp.parameters()):
        torch.testing.assert_close(ka, 0.9 * kb + 0.1 * qp)
    assert all(not p.requires_grad for p in head.key_mlp.parameters())


def test_frozen_head_passes_gradient_to_input_only():
    head = MomentumProjectionHead(16, 32, 8)
    x = torch.randn(3, 16, 4, 4, requires_grad=True)
    q, _ = head(x, frozen=True)
    q.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.query_mlp.parameters())


def test_d_ema_lerps_parameters_and_copies_buffers():
    D = TinyD()
    D_ema = make_momentum_copy(D)
    with torch.no_grad():
        D.conv.weight.add_(1.0)
        D.num_calls.fill_(7)
    ema_update_(D_ema, D, 0.999)
    torch.testing.assert_close(D_ema.conv.weight, D.conv.weight - 0.999)
    assert D_ema.num_calls.item() == 7


def test_head_optimizer_uses_lazy_regularisation_correction():
    opt = make_head_optimizer([torch.nn.Parameter(torch.zeros(1))], dict(lr=0.002, betas=(0.5, 0.99), eps=1e-8), 4)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 4 / 5)
    assert group["betas"] == pytest.approx((0.5 ** 0.8, 0.99 ** 0.8))
    assert make_head_optimizer([torch.nn.Parameter(torch.zeros(1))], OPT, None).param_groups[0]["lr"] == 0.002


# -- FakeCLR ---------------------------------------------------------------------

def test_fakeclr_trains_with_finite_losses_and_time_stamped_queue():
    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10), G, D)
    assert isinstance(hook, FakeCLRHook) and hook.real is None
    head_before = _flat(hook.fake.head.query_mlp)
    losses = train_steps(G, D, hook, num_steps=4)
    assert all(torch.isfinite(torch.tensor(losses)))
    queue = hook.fake.queue
    assert queue.num_inserted == 16 and queue.pointer == 6
    assert sorted(queue.stamps.tolist()) == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3]  # iteration indices, newest kept
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(10))
    assert not torch.equal(_flat(hook.fake.head.query_mlp), head_before)
    assert not torch.equal(_flat(hook.D_ema), _flat(D))
    assert queue.effective_length < 10  # the diversity-aware schedule has started shrinking (16 of 50 images)


def test_zero_weights_give_exactly_the_plain_run():
    G0, D0 = _nets()
    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    options = _options("fakeclr", lambda_D=0.0, lambda_G=0.0, fqs=10)
    assert _build(options, G0, D0) is None  # build_method: nothing active -> plain ADA-Linear
    hook = FakeCLRHook(D1, options, device=torch.device("cpu"), G_opt_kwargs=OPT, D_opt_kwargs=OPT,
                       G_reg_interval=4, D_reg_interval=16, total_kimg=1, batch_size=4)
    assert not any(hook.needs_features(p) for p in ("Gmain", "Dmain", "Greg", "Dreg"))
    plain = train_steps(G0, D0, None, num_steps=3)
    hooked = train_steps(G1, D1, hook, num_steps=3)
    assert plain == hooked
    assert torch.equal(_flat(G0), _flat(G1)) and torch.equal(_flat(D0), _flat(D1))


def test_building_a_hook_leaves_the_global_rng_untouched():
    G, D = _nets()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _build(_options("insgen"), G, D)
    assert torch.equal(torch.rand(3), expected)


def test_g_phase_term_trains_G_but_not_the_head():
    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10), G, D)
    train_steps(G, D, hook, num_steps=2)
    grads = []
    for h in (None, hook):
        torch.manual_seed(5)
        G.zero_grad(set_to_none=True)
        D.requires_grad_(False)
        StandInLoss(G, D, h).accumulate_gradients("Gmain", None, torch.zeros(4, 0), torch.randn(4, 8), torch.zeros(4, 0))
        grads.append(G.synth.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    assert all(p.grad is None for p in hook.fake.head.query_mlp.parameters())
    assert hook.fake.queue.num_inserted == 8  # the G phase enqueued nothing


@pytest.mark.parametrize("independent", [False, True])
def test_perturbed_key_reuses_the_query_mixing_draw_unless_independent(independent):
    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10, cl_independent_mixing=independent), G, D)
    loss = StandInLoss(G, D, hook, mixing_prob=1.0)
    torch.manual_seed(0)
    loss.accumulate_gradients("Dmain", torch.rand(4, 3, 8, 8), torch.zeros(4, 0), torch.randn(4, 8), torch.zeros(4, 0))
    query_mixing, key_mixing = loss.mixing_calls
    assert (key_mixing is query_mixing) != independent


def test_unmixed_query_gives_an_unmixed_key():
    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10), G, D)
    loss = StandInLoss(G, D, hook, mixing_prob=0.0)
    loss.accumulate_gradients("Dmain", torch.rand(4, 3, 8, 8), torch.zeros(4, 0), torch.randn(4, 8), torch.zeros(4, 0))
    assert loss.mixing_calls[0] is None and loss.mixing_calls[1][1] == G.num_ws  # cutoff = num_ws: no mixing


def _state_round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("method", ["fakeclr", "insgen"])
def test_snapshot_resume_is_exact(method):
    G, D = _nets()
    options = _options(method, fqs=10, rqs=6)
    hook = _build(options, G, D)
    train_steps(G, D, hook, num_steps=3)
    saved = _state_round_trip({"G": G.state_dict(), "D": D.state_dict(), "hook": hook.state_dict()})
    G2, D2 = _nets(seed=99)
    G2.load_state_dict(saved["G"])
    D2.load_state_dict(saved["D"])
    resumed = _build(options, G2, D2)
    resumed.load_state_dict(saved["hook"])
    a = train_steps(G, D, hook, num_steps=2, seed=7, start_nimg=12)
    b = train_steps(G2, D2, resumed, num_steps=2, seed=7, start_nimg=12)
    assert a == b
    assert torch.equal(_flat(G), _flat(G2)) and torch.equal(_flat(D), _flat(D2))
    for name, module in hook.modules().items():
        other = resumed.modules()[name]
        for (k, v), (_, w) in zip(module.state_dict().items(), other.state_dict().items()):
            assert k == "_extra_state" and v == w or torch.equal(v, w), (name, k)


def test_resume_with_another_method_fails_clearly():
    G, D = _nets()
    with pytest.raises(ValueError, match="--method"):
        _build(_options("insgen"), G, D).load_state_dict(_build(_options("fakeclr"), G, D).state_dict())


# -- InsGen ------------------------------------------------------------------------

def test_insgen_trains_both_heads_and_queues():
    G, D = _nets()
    hook = _build(_options("insgen", fqs=9, rqs=7), G, D)
    assert isinstance(hook, InsGenHook) and hook.needs_real_logits("Dmain")
    real_before = _flat(hook.real.head.query_mlp)
    losses = train_steps(G, D, hook, num_steps=3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert hook.fake.queue.num_inserted == 12 and hook.real.queue.num_inserted == 12
    assert hook.fake.queue.num_active == 9 and hook.real.queue.num_active == 7  # fixed lengths
    assert not torch.equal(_flat(hook.real.head.query_mlp), real_before)


# -- ContraGAN 2C --------------------------------------------------------------------

def test_contragan_2c_trains_on_labels():
    G, D = _nets(c_dim=3)
    hook = _build(_options("contragan"), G, D)
    assert isinstance(hook, ContraGAN2CHook)
    before = _flat(hook.head)
    losses = train_steps(G, D, hook, num_steps=3, c_dim=3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(_flat(hook.head), before)


def test_contragan_without_labels_fails_clearly():
    G, D = _nets()
    with pytest.raises(ValueError, match="--cond=True"):
        _build(_options("contragan"), G, D)


# -- issue 16: head initialisation, query view, forgetting report, no retained graphs --------

def test_insgen_heads_are_independent_draws_reproducible_from_the_seed():
    G, D = _nets()
    options = _options("insgen", fqs=10, rqs=10)
    first = build_method(options, G, D, torch.device("cpu"), OPT, OPT, 4, 16, 0.05, 4, seed=3)
    again = build_method(options, G, D, torch.device("cpu"), OPT, OPT, 4, 16, 0.05, 4, seed=3)
    other = build_method(options, G, D, torch.device("cpu"), OPT, OPT, 4, 16, 0.05, 4, seed=4)
    real, fake = _flat(first.real.head.query_mlp), _flat(first.fake.head.query_mlp)
    assert real.shape == fake.shape and (real - fake).abs().mean() > 0.01  # not one draw used twice
    assert torch.equal(real, _flat(again.real.head.query_mlp)) and torch.equal(fake, _flat(again.fake.head.query_mlp))
    assert not torch.equal(fake, _flat(other.fake.head.query_mlp))
    assert torch.equal(_flat(first.real.head.key_mlp), real)  # each key MLP starts as its own query MLP


def _count_query_passes(view, phase_names=("Gmain", "Dmain")):
    """D (not D_ema) forwards per phase, for one training step with the given query view."""
    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10, cl_query_view=view), G, D)
    loss = StandInLoss(G, D, hook)
    counts = dict.fromkeys(phase_names, 0)
    current = [None]
    plain_run_D = loss.run_D

    def counting_run_D(img, c, update_emas=False, D=None):
        counts[current[0]] += D is None  # D_ema's key passes do not count
        return plain_run_D(img, c, D=D)
    loss.run_D = counting_run_D
    hook.begin_iteration(0, 0)
    for name in phase_names:
        current[0] = name
        loss.accumulate_gradients(name, torch.rand(4, 3, 8, 8), torch.zeros(4, 0), torch.randn(4, G.z_dim),
                                  torch.zeros(4, 0))
    return counts


def test_independent_query_view_costs_one_more_D_forward_per_phase():
    shared, independent = _count_query_passes("shared"), _count_query_passes("independent")
    assert shared == {"Gmain": 1, "Dmain": 2}  # the adversarial passes only (fake + real in Dmain)
    assert independent == {"Gmain": 2, "Dmain": 3}


@pytest.mark.parametrize("mode, expected_mean", [("code_constant", 1.0), ("paper", 1 / 10)])
def test_forgetting_margin_is_reported_per_step(mode, expected_mean):
    from torch_utils import training_stats

    G, D = _nets()
    hook = _build(_options("fakeclr", fqs=10, fqs_schedule="fixed", forgetting_mode=mode), G, D)
    collector = training_stats.Collector(regex="Loss/contrastive/.*", keep_previous=False)
    train_steps(G, D, hook, num_steps=4)  # the queue holds 10 of 16 keys after 4 steps
    collector.update()
    assert collector.num("Loss/contrastive/fake_margin_mean") == 4
    train_steps(G, D, hook, num_steps=1, start_nimg=16)  # one more step, on a full queue
    collector.update()
    assert collector.mean("Loss/contrastive/fake_margin_mean") == pytest.approx(expected_mean, rel=1e-6)
    nats = collector.mean("Loss/contrastive/fake_margin_nats")
    if mode == "code_constant":  # every negative x e^{1/tau} = 148: at most log 148 = 5.0 nats
        assert 4.0 < nats < 5.0
    else:  # the newest 4 of 10 get m = 1/4 each (x e^{1.25}); at most log((6 + 4 e^{1.25}) / 10) = 0.69 nats
        assert 0.05 < nats < 0.69


def test_hook_held_tensors_keep_no_graph_alive():
    """The queue, pending keys and momentum copies hold no autograd graph across iterations."""
    import gc
    import weakref

    G, D = _nets()
    hook = _build(_options("insgen", fqs=10, rqs=10), G, D)
    queries = []
    for branch in (hook.fake, hook.real):
        plain_forward = branch.head.forward

        def remember(*args, _forward=plain_forward, **kwargs):
            query, key = _forward(*args, **kwargs)
            queries.append(weakref.ref(query))
            return query, key
        branch.head.forward = remember
    train_steps(G, D, hook, num_steps=3)
    gc.collect()
    assert len(queries) == 3 * 3 and all(ref() is None for ref in queries)  # fake D, real D, fake G per step
    for branch in (hook.fake, hook.real):
        assert branch.pending_keys == []
        assert branch.queue.keys.grad_fn is None and not branch.queue.keys.requires_grad
    assert not any(p.requires_grad for p in hook.D_ema.parameters())


def test_discrimination_stats_count_the_negatives_in_play():
    """negatives / chance level log(1 + K) / top-1 per D step, K = the queue's active entries before it."""
    import math

    from torch_utils import training_stats

    G, D = _nets()
    hook = _build(_options("insgen", fqs=10, rqs=10), G, D)
    collector = training_stats.Collector(regex="Loss/contrastive/.*", keep_previous=False)
    train_steps(G, D, hook, num_steps=4)  # 4 keys per step: 0, 4, 8, then 10 (full) negatives
    collector.update()
    for branch in ("fake", "real"):
        assert collector.num(f"Loss/contrastive/{branch}_negatives") == 4
        assert collector.mean(f"Loss/contrastive/{branch}_negatives") == pytest.approx((0 + 4 + 8 + 10) / 4)
        expected_chance = sum(math.log(1 + k) for k in (0, 4, 8, 10)) / 4
        assert collector.mean(f"Loss/contrastive/{branch}_chance_nats") == pytest.approx(expected_chance)
        assert collector.num(f"Loss/contrastive/{branch}_top1") == 3 * 4  # no top-1 on an empty queue
        assert 0.0 <= collector.mean(f"Loss/contrastive/{branch}_top1") <= 1.0

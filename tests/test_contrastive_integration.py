"""The FakeCLR hook inside the real StyleGAN2Loss with the real (tiny) Generator / Discriminator."""

import torch

from training.loss import StyleGAN2Loss
from training.phase_steps import begin_phase, finish_phase
from training.contrastive import resolve_method
from training.method_stack import build_method
from training.networks import Discriminator, Generator

OPT = dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8)


def test_fakeclr_hook_in_the_real_loss_reuses_the_mixing_draw():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8))
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8)
    options = resolve_method("fakeclr", dict(head_hidden_dim=16, head_out_dim=8, fqs=6), dataset_size=400,
                             mirror=False, batch=4)
    hook = build_method(options, G, D, torch.device("cpu"), OPT, OPT, 4, 16, total_kimg=1, batch_size=4)
    loss = StyleGAN2Loss(torch.device("cpu"), G.mapping, G.synthesis, D, style_mixing_prob=1.0, method=hook)
    calls = []
    run_G = loss.run_G
    loss.run_G = lambda *a, **k: calls.append(k.get("mixing")) or run_G(*a, **k)
    hook.begin_iteration(0, 0)
    for phase, module in (("Gmain", G), ("Dmain", D)):
        G.requires_grad_(module is G)
        D.requires_grad_(module is D)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
        begin_phase(phase, optimizer, hook)
        loss.accumulate_gradients(phase, torch.rand(4, 3, 8, 8) * 2 - 1, torch.zeros(4, 0), torch.randn(4, 8),
                                  torch.zeros(4, 0), gain=1)
        finish_phase(phase, optimizer, hook)  # as the loop does: steps, then the keys are gathered and enqueued
    assert hook.fake.queue.num_inserted == 4 and hook.fake.queue.num_active == 4
    assert torch.allclose(hook.fake.queue.keys[:4].norm(dim=1), torch.ones(4))
    key_mixing = calls[-1]  # the perturbed key's G call passed the query's (z2, cutoff) draw
    assert key_mixing is not None and key_mixing[1] < G.num_ws and key_mixing[0].shape == (4, 8)
    assert all(torch.isfinite(p).all() for p in hook.fake.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())

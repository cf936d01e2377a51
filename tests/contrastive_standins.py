"""Tiny stand-ins for G, D and StyleGAN2Loss that speak the loss-hook contract (CPU, milliseconds).

They let the contrastive tests run without the real networks: TinyG maps z to a few ws and an
8x8 image; TinyD returns logits and a [N, C, 4, 4] feature map; StandInLoss builds the PhaseContext
the way the loss does and adds the method's terms; `train_steps` steps, gathers and ends each phase
through training.phase_steps, as the training loop does.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from training.method import Method as LossHook, PhaseContext
from training.phase_steps import begin_phase, finish_phase


class TinyG(torch.nn.Module):
    def __init__(self, z_dim: int = 8, c_dim: int = 0, w_dim: int = 8, num_ws: int = 3, res: int = 8):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.res = z_dim, c_dim, w_dim, num_ws, res
        self.map = torch.nn.Linear(z_dim + c_dim, w_dim)
        self.synth = torch.nn.Linear(w_dim * num_ws, 3 * res * res)

    def mapping(self, z, c, update_emas=False):
        x = torch.cat([z, c], dim=1) if self.c_dim else z
        return F.leaky_relu(self.map(x), 0.2)[:, None, :].repeat(1, self.num_ws, 1)

    def synthesis(self, ws):
        return torch.tanh(self.synth(ws.flatten(1))).view(-1, 3, self.res, self.res)


class TinyEpilogue(torch.nn.Module):
    def __init__(self, in_channels: int, cmap_dim: int):
        super().__init__()
        self.in_channels = in_channels
        self.fc = torch.nn.Linear(in_channels * 16, in_channels)
        self.out = torch.nn.Linear(in_channels, 1)

    def penultimate(self, x, img=None):
        """The fc output [N, C], as the real epilogue's (StudioGAN's 2C embeds it)."""
        return F.leaky_relu(self.fc(x.flatten(1)), 0.2)

    def forward(self, x):
        return self.out(self.penultimate(x))


class TinyD(torch.nn.Module):
    def __init__(self, c_dim: int = 0, channels: int = 16, res: int = 8):
        super().__init__()
        self.c_dim = c_dim
        self.conv = torch.nn.Conv2d(3, channels, 3, stride=res // 4, padding=1)
        self.b4 = TinyEpilogue(channels, 0)
        self.register_buffer("num_calls", torch.zeros([]))  # a buffer, so D_ema's buffer copy is exercised

    def forward(self, img, c, update_emas=False, return_features=False):
        features = F.leaky_relu(self.conv(img), 0.2)
        logits = self.b4(features)
        return (logits, features) if return_features else logits


class StandInLoss:
    """Just enough of StyleGAN2Loss: logistic G/D terms plus the hooks' terms, one backward per phase."""

    def __init__(self, G: TinyG, D: TinyD, hook: Optional[LossHook], mixing_prob: float = 0.0):
        self.G, self.D, self.hook, self.mixing_prob = G, D, hook, mixing_prob
        self.mixing_calls: list = []  # (z2, cutoff) of every run_G call, for the mixing tests

    def run_G(self, z, c, update_emas=False, mixing=None):
        ws = self.G.mapping(z, c)
        if mixing is None and self.mixing_prob > 0 and torch.rand([]) < self.mixing_prob:
            mixing = (torch.randn_like(z), int(torch.randint(1, self.G.num_ws, [])))
        if mixing is not None:
            z2, cutoff = mixing
            ws = torch.cat([ws[:, :cutoff], self.G.mapping(z2, c)[:, cutoff:]], dim=1)
        self.mixing_calls.append(mixing)
        self.last_mixing = mixing
        return self.G.synthesis(ws), ws

    def run_D(self, img, c, update_emas=False, D=None):
        return (D or self.D)(img, c, return_features=True)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain=1.0):
        hook = self.hook
        ctx = PhaseContext(phase=phase, gain=gain, run_G=self.run_G, run_D=self.run_D,
                           gen_z=gen_z, gen_c=gen_c, real_img=real_img, real_c=real_c)
        if phase == "Gmain":
            ctx.gen_img, ctx.gen_ws = self.run_G(gen_z, gen_c)
            ctx.gen_mixing = self.last_mixing
            ctx.gen_logits, ctx.gen_features = self.run_D(ctx.gen_img, gen_c)
            loss = F.softplus(-ctx.gen_logits).mean()
        else:
            with torch.no_grad():
                ctx.gen_img, ctx.gen_ws = self.run_G(gen_z, gen_c)
            ctx.gen_mixing = self.last_mixing
            ctx.gen_logits, ctx.gen_features = self.run_D(ctx.gen_img, gen_c)
            ctx.real_logits, ctx.real_features = self.run_D(real_img, real_c)
            loss = F.softplus(ctx.gen_logits).mean() + F.softplus(-ctx.real_logits).mean()
        if hook is not None:
            terms = hook.loss_terms(ctx)
            if terms is not None:
                loss = loss + terms.mean()
        (loss * gain).backward()
        return loss.detach()


def train_steps(G, D, hook, num_steps: int, batch: int = 4, c_dim: int = 0, seed: int = 0,
                start_nimg: int = 0, mixing_prob: float = 0.0, global_batch: Optional[int] = None) -> list[float]:
    """A tiny seeded loop: Gmain then Dmain per iteration with plain SGD on G and D; returns losses.

    `batch` is this rank's batch; `global_batch` (default `batch`) advances cur_nimg, as across ranks.
    """
    global_batch = global_batch or batch
    torch.manual_seed(seed)
    loss = StandInLoss(G, D, hook, mixing_prob)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.01)
    opt_D = torch.optim.SGD(D.parameters(), lr=0.01)
    losses = []
    for step in range(num_steps):
        cur_nimg = start_nimg + step * global_batch
        if hook is not None:
            hook.begin_iteration(cur_nimg, step)
        real = torch.rand(batch, 3, G.res, G.res) * 2 - 1
        c = F.one_hot(torch.randint(0, c_dim, [batch]), c_dim).float() if c_dim else torch.zeros(batch, 0)
        for phase, module, opt, other in (("Gmain", G, opt_G, D), ("Dmain", D, opt_D, G)):
            module.requires_grad_(True)
            other.requires_grad_(False)
            begin_phase(phase, opt, hook)
            losses.append(float(loss.accumulate_gradients(phase, real, c, torch.randn(batch, G.z_dim), c)))
            finish_phase(phase, opt, hook)  # the training loop's steps, gathers and end_phase
        G.requires_grad_(True)
        D.requires_grad_(True)
        if hook is not None:
            hook.end_iteration(cur_nimg + global_batch, step)
    return losses

"""StyleGAN2 loss: non-saturating logistic loss, lazy R1 and path-length regularisation.

One call of `accumulate_gradients` handles one round (one batch_gpu chunk) of one phase:
  Gmain  softplus(-D(A(G(z))))                      Greg  path-length penalty (pl_weight)
  Dmain  softplus(D(A(G(z)))) + softplus(-D(A(x)))  Dreg  R1 = gamma/2 * |grad_x D(A(x))|^2
  Gboth = Gmain + Greg, Dboth = Dmain + Dreg (no lazy regularisation).
A = the augmentation pipe, applied to reals and fakes in every phase. Every term is averaged
over the round, multiplied by `gain` (the phase interval) and back-propagated ONCE per round,
together with the terms of the run's method (`training.method.Method`), which may also transform
D's inputs (`augment_input` on every image, `real_input` on the reals of D phases).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Optional

import numpy as np
import torch

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from training.method import Method, PhaseContext

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")

Mixing = tuple[Optional[torch.Tensor], int]  # (second latent z2 or None, cutoff); cutoff == num_ws: no mixing


class StyleGAN2Loss:
    def __init__(self, device: torch.device, G_mapping: torch.nn.Module, G_synthesis: torch.nn.Module,
                 D: torch.nn.Module, augment_pipe: Optional[torch.nn.Module] = None, style_mixing_prob: float = 0.9,
                 r1_gamma: float = 10, pl_batch_shrink: int = 2, pl_decay: float = 0.01, pl_weight: float = 2,
                 method: Optional[Method] = None):
        _check_range("style_mixing_prob", style_mixing_prob, 0, 1)
        _check_range("r1_gamma (--gamma)", r1_gamma, 0, math.inf)
        _check_range("pl_weight", pl_weight, 0, math.inf)
        _check_range("pl_decay", pl_decay, 0, 1)
        if not isinstance(pl_batch_shrink, int) or pl_batch_shrink < 1:
            raise ValueError(f"StyleGAN2Loss: pl_batch_shrink={pl_batch_shrink!r} must be an integer >= 1")
        if method is not None and not isinstance(method, Method):
            raise TypeError(f"StyleGAN2Loss: method {method!r} must subclass training.method.Method")
        self.device = torch.device(device)
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.augment_pipe = augment_pipe
        self.style_mixing_prob = float(style_mixing_prob)
        self.r1_gamma = float(r1_gamma)
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = float(pl_decay)
        self.pl_weight = float(pl_weight)
        self.method = method if method is not None else Method()  # the base Method adds nothing
        self.pl_mean = torch.zeros([], device=self.device)
        # Wraps the synthesis and D forward passes of run_G/run_D (training.speed sets a bf16 autocast here).
        self.forward_context = contextlib.nullcontext

    def use_networks(self, networks: dict[str, torch.nn.Module], forward_context: Callable) -> None:
        """Swap in other versions of the networks (compiled or eager: training.speed) and the forward context."""
        unknown = set(networks) - {"G_mapping", "G_synthesis", "D"}
        if unknown:
            raise ValueError(f"StyleGAN2Loss.use_networks: unknown network(s) {', '.join(sorted(unknown))}")
        for name, module in networks.items():
            setattr(self, name, module)
        self.forward_context = forward_context

    # ------------------------------------------------------------------ forward passes

    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False, mixing: Optional[Mixing] = None,
              return_mixing: bool = False):
        """G(z, c) -> (img, ws), or (img, ws, mixing) with `return_mixing`.

        Style mixing uses one cutoff for the whole call. `mixing=(z2, cutoff)` reuses a previous
        draw exactly (cutoff == num_ws, z2 None: no mixing); None draws a fresh one.
        """
        ws, mixing = self._mapping(z, c, update_emas, mixing)
        with self.forward_context():
            img = self.G_synthesis(ws)
        img = img.float()  # a no-op without autocast
        return (img, ws, mixing) if return_mixing else (img, ws)

    def _mapping(self, z, c, update_emas, mixing):
        ws = self.G_mapping(z, c, update_emas=update_emas)
        if mixing is None:
            mixing = self._draw_mixing(z, ws.shape[1])
        z2, cutoff = mixing
        if cutoff < ws.shape[1]:
            ws_mix = self.G_mapping(z2, c, update_emas=False)
            ws = torch.cat([ws[:, :cutoff], ws_mix[:, cutoff:]], dim=1)
        return ws, mixing

    def _draw_mixing(self, z: torch.Tensor, num_ws: int) -> Mixing:
        # Drawn on the host RNG: an int cutoff without any device synchronisation.
        if self.style_mixing_prob <= 0 or num_ws < 2 or float(torch.rand([])) >= self.style_mixing_prob:
            return (None, num_ws)
        cutoff = int(torch.randint(1, num_ws, []))
        return (torch.randn_like(z), cutoff)

    def run_D(self, img: torch.Tensor, c: torch.Tensor, update_emas: bool = False, D: Optional[torch.nn.Module] = None,
              return_features: bool = True):
        """D(A(T(img)), c) with fresh draws -> (logits, features or None); T: the method's `augment_input`,
        A: the ADA pipe; `D` overrides self.D."""
        img = self.method.augment_input(img)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        D = self.D if D is None else D
        with self.forward_context():
            out = D(img, c, update_emas=update_emas, return_features=return_features)
        if not return_features:
            return out.float(), None
        return out[0].float(), (out[1].float() if out[1] is not None else None)

    # ------------------------------------------------------------------ one round of one phase

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                             gen_c: torch.Tensor, gain: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"StyleGAN2Loss: unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        do_main = phase in ("Gmain", "Gboth", "Dmain", "Dboth")
        if phase.startswith("G"):
            do_reg = phase in ("Greg", "Gboth") and self.pl_weight != 0
            ctx, loss = self._generator_round(phase, do_main, do_reg, real_img, real_c, gen_z, gen_c, gain)
        else:
            do_reg = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
            ctx, loss = self._discriminator_round(phase, do_main, do_reg, real_img, real_c, gen_z, gen_c, gain)
        if loss is None:
            return
        term = self.method.loss_terms(ctx)
        if term is not None:
            loss = loss + term.mean()
        loss.mul(gain).backward()

    def _context(self, phase: str, gain: float, **items) -> PhaseContext:
        return PhaseContext(phase=phase, gain=gain, run_G=self.run_G, run_D=self.run_D, **items)

    def _generator_round(self, phase, do_main, do_reg, real_img, real_c, gen_z, gen_c, gain):
        feats = self.method.needs_features(phase)
        ctx = self._context(phase, gain, gen_z=gen_z, gen_c=gen_c, real_img=real_img, real_c=real_c)
        loss = None
        if do_main:
            img, ws, mixing = self.run_G(gen_z, gen_c, update_emas=True, return_mixing=True)
            logits, features = self.run_D(img, gen_c, return_features=feats)
            training_stats.report("Loss/scores/fake", logits)
            training_stats.report("Loss/signs/fake", logits.sign())
            loss_Gmain = torch.nn.functional.softplus(-logits)  # -log(sigmoid(logits))
            training_stats.report("Loss/G/loss", loss_Gmain)
            training_stats.report("Debug/finite_loss/G", torch.isfinite(loss_Gmain).float())  # see FINITE_LOSS_STATS
            loss = loss_Gmain.mean()
            ctx.gen_img, ctx.gen_ws, ctx.gen_mixing, ctx.gen_logits, ctx.gen_features = img, ws, mixing, logits, features
        if do_reg:
            loss_pl, img, ws, mixing = self._path_length_loss(gen_z, gen_c)
            loss = loss_pl if loss is None else loss + loss_pl
            if not do_main:
                ctx.gen_z, ctx.gen_c = gen_z[:img.shape[0]], gen_c[:img.shape[0]]
                ctx.gen_img, ctx.gen_ws, ctx.gen_mixing = img, ws, mixing
        if loss is not None and self.method.needs_real_logits(phase):
            ctx.real_logits, ctx.real_features = self.run_D(real_img, real_c, return_features=feats)
        return ctx, loss

    def _path_length_loss(self, gen_z, gen_c):
        batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        ws, mixing = self._mapping(gen_z[:batch], gen_c[:batch], True, None)
        if not ws.requires_grad:  # mapping frozen: differentiate w.r.t. ws as a leaf
            ws = ws.detach().requires_grad_(True)
        img = self.G_synthesis(ws)
        # Unit-variance noise per image, scaled so the length does not depend on the resolution.
        pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
        with conv2d_gradfix.no_weight_gradients():
            pl_grads = torch.autograd.grad(outputs=[(img * pl_noise).sum()], inputs=[ws], create_graph=True,
                                           only_inputs=True)[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        training_stats.report("Loss/pl_penalty", pl_penalty)
        loss_Gpl = pl_penalty * self.pl_weight
        training_stats.report("Loss/G/reg", loss_Gpl)
        # The zero term keeps the synthesis output in the graph (DDP expects every parameter used).
        return (img[:, 0, 0, 0] * 0 + loss_Gpl).mean(), img, ws, mixing

    def _discriminator_round(self, phase, do_main, do_reg, real_img, real_c, gen_z, gen_c, gain):
        if not (do_main or do_reg):
            return None, None
        feats = self.method.needs_features(phase)
        real_img = self.method.real_input(real_img, phase)  # e.g. APA: some reals replaced by fakes
        ctx = self._context(phase, gain, gen_z=gen_z, gen_c=gen_c, real_img=real_img, real_c=real_c)
        loss = 0.0
        if do_main:
            img, ws, mixing = self.run_G(gen_z, gen_c, update_emas=True, return_mixing=True)
            logits, features = self.run_D(img, gen_c, update_emas=True, return_features=feats)
            training_stats.report("Loss/scores/fake", logits)
            training_stats.report("Loss/signs/fake", logits.sign())
            loss_Dgen = torch.nn.functional.softplus(logits)  # -log(1 - sigmoid(logits))
            loss = loss + loss_Dgen.mean()
            ctx.gen_img, ctx.gen_ws, ctx.gen_mixing, ctx.gen_logits, ctx.gen_features = img, ws, mixing, logits, features

        real = real_img.detach().requires_grad_(do_reg)
        logits, features = self.run_D(real, real_c, return_features=feats)
        training_stats.report("Loss/scores/real", logits)
        training_stats.report("Loss/signs/real", logits.sign())
        ctx.real_logits, ctx.real_features = logits, features
        if do_main:
            loss_Dreal = torch.nn.functional.softplus(-logits)  # -log(sigmoid(logits))
            training_stats.report("Loss/D/loss", loss_Dgen + loss_Dreal)
            training_stats.report("Debug/finite_loss/D", torch.isfinite(loss_Dgen + loss_Dreal).float())
            loss = loss + loss_Dreal.mean()
        if do_reg:
            with conv2d_gradfix.no_weight_gradients():
                r1_grads = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True,
                                               only_inputs=True)[0]
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
            training_stats.report("Loss/r1_penalty", r1_penalty)
            training_stats.report("Loss/D/reg", loss_Dr1)
            loss = loss + (logits * 0 + loss_Dr1[:, None]).mean()  # zero term: keep the logits in the graph
        return ctx, loss


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"StyleGAN2Loss: {name}={value!r} must lie in [{low}, {high}]")

"""Loss hooks of the contrastive methods: FakeCLR, InsGen (instance discrimination) and ContraGAN 2C.

Each is a `training.method.Method` registered under its --method name: the loss hands over D's
4x4 features, latents, labels and `run_G` / `run_D`; the method returns its weighted terms, hands
its head optimisers to the loop (stepped once per D phase, after D's) and the keys of the phase's
rounds to gather (`tensors_to_gather`); at the phase end it enqueues the keys of every rank.

Instance discrimination (one class for both FakeCLR and InsGen, configured by MethodOptions):
  D phase, fake branch:  q = head(D(T(G(z)))),  k = key_head(D_ema(T'(G(z + delta)))),
                         lambda_D * InfoNCE(q, k, queue, margin m_i), then enqueue keys.
  D phase, real branch:  q = head_r(D(T(x))),   k = key_head_r(D_ema(T'(x))),  lambda_real * InfoNCE.
  G phase:               q = head(D(T(G(z)))) with the head frozen, k = key_head(D_ema(T'(G(z)))),
                         lambda_G * InfoNCE against the fake queue, nothing enqueued.
The query's D(T(.)) is the adversarial pass's (cl_query_view='shared') or a fresh draw ('independent').
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from torch_utils import misc, training_stats
from training.contrastive.head import (MomentumProjectionHead, infer_feature_channels,
                                       make_head_optimizer, make_momentum_copy, pool_features)
from training.contrastive.losses import contrastive_2c_loss, forgetting_margin, info_nce
from training.contrastive.noise import perturb_latents
from training.contrastive.presets import MethodOptions, contrastive_enabled
from training.contrastive.queue import TimestampedQueue
from training.method import D_PHASES, G_PHASES, Method, MethodEnv, PhaseContext
from training.method_registry import register

HEAD_INIT_SEED = 0xC0FFEE  # heads are built from their own RNG streams: identical on every rank,
                           # and the training run's global RNG is left untouched
FAKE_BRANCH, REAL_BRANCH = 0, 1


def head_init_seed(run_seed: int, branch: int) -> int:
    """The seed of one head's initialisation: a stream per (run seed, branch), so InsGen's real and
    fake heads start as independent draws, every rank draws the same, and --seed reproduces them."""
    return HEAD_INIT_SEED + 2 * int(run_seed) + branch


def _build_without_touching_rng(factory, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


class _HeadBranch:
    """One contrastive head with its queue and optimiser (the fake or the real branch)."""

    def __init__(self, head: MomentumProjectionHead, queue: TimestampedQueue, optimizer: torch.optim.Optimizer):
        self.head = head
        self.queue = queue
        self.optimizer = optimizer
        self.pending_keys: list[torch.Tensor] = []  # no-grad keys of this phase's rounds, enqueued at its end

    def take_pending_keys(self) -> Optional[torch.Tensor]:
        """This phase's keys (every round, in order) for the loop to gather; the list starts empty again."""
        keys, self.pending_keys = self.pending_keys, []
        return torch.cat(keys) if keys else None

    def restart_key_head(self) -> None:
        """The key MLP starts equal to the query MLP (as when the head is built)."""
        misc.copy_params_and_buffers(self.head.query_mlp, self.head.key_mlp, require_all=True)


class InstanceContrastHook(Method):
    """Fake-instance (and optionally real-instance) discrimination with momentum heads and queues."""

    @classmethod
    def create(cls, options: MethodOptions, env: MethodEnv) -> Optional[Method]:
        return build_contrastive(options, env)  # the options (not the name) pick the class: --no_fakeclr etc.

    def __init__(self, D: torch.nn.Module, options: MethodOptions, *, device: torch.device,
                 G_opt_kwargs: dict[str, Any], D_opt_kwargs: dict[str, Any], G_reg_interval: Optional[int],
                 D_reg_interval: Optional[int], total_kimg: float, batch_size: int, num_ws: Optional[int] = None,
                 feature_channels: Optional[int] = None, seed: int = 0):
        self.options = options
        self.D = D
        self.device = torch.device(device)
        self.total_kimg = float(total_kimg)
        self.batch_size = int(batch_size)
        self.num_ws = num_ws
        self.stamp = 0
        channels = feature_channels or infer_feature_channels(D)
        self.D_ema = make_momentum_copy(D).to(self.device)
        self.fake = self._make_branch(channels, options.fqs, "fake_queue", options.fqs_schedule, options.fqs_min,
                                      G_opt_kwargs, G_reg_interval, head_init_seed(seed, FAKE_BRANCH)) \
            if options.fake_head else None
        self.real = self._make_branch(channels, options.rqs, "real_queue", "fixed", None,
                                      D_opt_kwargs, D_reg_interval, head_init_seed(seed, REAL_BRANCH)) \
            if options.real_head else None

    def _make_branch(self, channels, capacity, name, schedule, min_length, opt_kwargs, reg_interval,
                     init_seed) -> _HeadBranch:
        options = self.options
        head = _build_without_touching_rng(
            lambda: MomentumProjectionHead(channels, options.head_hidden_dim, options.head_out_dim,
                                           options.head_momentum),
            init_seed).to(self.device)
        queue = TimestampedQueue(capacity, options.head_out_dim, schedule, min_length, name=name).to(self.device)
        return _HeadBranch(head, queue, make_head_optimizer(head.query_mlp.parameters(), opt_kwargs, reg_interval))

    # -- hook interface --------------------------------------------------------

    def needs_features(self, phase: str) -> bool:
        if phase in D_PHASES:
            fake_used = self.fake is not None and (self.options.lambda_D > 0 or self._g_term_enabled())
            return fake_used or (self.real is not None and self.options.lambda_real > 0)
        return phase in G_PHASES and self._g_term_enabled()

    def needs_real_logits(self, phase: str) -> bool:
        return phase in D_PHASES and self.real is not None and self.options.lambda_real > 0

    def begin_iteration(self, cur_nimg: int, batch_idx: int) -> None:
        misc.ema_update_(self.D_ema, self.D, self.options.d_ema_momentum)
        self.stamp = cur_nimg // self.batch_size  # the iteration index, continuous across resumes
        if self.fake is not None:
            self.fake.queue.set_progress(cur_nimg / (self.total_kimg * 1000.0))

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        if ctx.phase in D_PHASES:
            terms = [t for t in (self._fake_d_term(ctx), self._real_d_term(ctx)) if t is not None]
            return sum(terms) if terms else None
        if ctx.phase in G_PHASES and self._g_term_enabled():
            return self._fake_g_term(ctx)
        return None

    def phase_optimizers(self, phase: str) -> list[torch.optim.Optimizer]:
        return [b.optimizer for b in (self.fake, self.real) if b is not None] if phase in D_PHASES else []

    def tensors_to_gather(self, phase: str) -> dict[str, torch.Tensor]:
        if phase not in D_PHASES:
            return {}
        branches = (("fake", self.fake), ("real", self.real))
        keys = {name: branch.take_pending_keys() for name, branch in branches if branch is not None}
        return {name: value for name, value in keys.items() if value is not None}

    def end_phase(self, phase: str, gathered: dict[str, torch.Tensor]) -> None:
        """Every rank enqueues the same gathered keys, so the queues stay identical across ranks."""
        for name, branch in (("fake", self.fake), ("real", self.real)):
            if branch is not None and name in gathered:
                branch.queue.enqueue(gathered[name], self.stamp)

    def restart_momentum_copies(self) -> None:
        """After a weights-only resume: D_ema and the (fresh) key MLPs start from the resumed networks."""
        misc.copy_params_and_buffers(self.D, self.D_ema, require_all=True)
        for branch in (self.fake, self.real):
            if branch is not None:
                branch.restart_key_head()

    def modules(self) -> dict[str, torch.nn.Module]:
        named = {"D_ema": self.D_ema}
        for prefix, branch in (("fake", self.fake), ("real", self.real)):
            if branch is not None:
                named[f"{prefix}_head"] = branch.head
                named[f"{prefix}_queue"] = branch.queue
        return named

    def state_dict(self) -> dict[str, Any]:
        optimizers = {f"{p}_head": b.optimizer.state_dict() for p, b in (("fake", self.fake), ("real", self.real)) if b}
        return {"modules": {name: m.state_dict() for name, m in self.modules().items()},
                "optimizers": optimizers, "stamp": self.stamp}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        modules = self.modules()
        missing = sorted(set(modules) - set(state.get("modules", {})))
        if missing:
            raise ValueError(f"resume: the snapshot has no contrastive state for {', '.join(missing)}; "
                             "resume with the --method the snapshot was trained with")
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        for prefix, branch in (("fake", self.fake), ("real", self.real)):
            if branch is not None and f"{prefix}_head" in state.get("optimizers", {}):
                branch.optimizer.load_state_dict(state["optimizers"][f"{prefix}_head"])
        self.stamp = int(state.get("stamp", 0))

    # -- terms -----------------------------------------------------------------

    def _g_term_enabled(self) -> bool:
        return self.fake is not None and self.options.cl_on_g and self.options.lambda_G > 0

    def _nce(self, query, key, queue: TimestampedQueue, mode: str, stat: Optional[str] = None) -> torch.Tensor:
        margin = forgetting_margin(mode, queue.stamps, queue.active, self.options.tau_m)
        loss = info_nce(query, key, queue.keys, self.options.tau, queue.active, margin)
        if stat is not None:
            self._report_discrimination(stat, query, key, queue)
            if margin is not None:
                self._report_margin(stat, query, key, queue, margin, loss)
        return loss

    @torch.no_grad()
    def _report_discrimination(self, stat, query, key, queue: TimestampedQueue) -> None:
        """Is the head learning? Negatives in play, the loss of a head that cannot tell them apart
        (log(1 + K)), and the share of queries whose positive beats every negative (top-1)."""
        num_negatives = queue.num_active  # a host integer: no device sync
        training_stats.report(f"{stat}_negatives", float(num_negatives))
        training_stats.report(f"{stat}_chance_nats", math.log1p(num_negatives))
        if num_negatives == 0:
            return
        positive = (query * key).sum(dim=1)
        similarity = (query @ queue.keys.to(query.dtype).t()).masked_fill(~queue.active, float("-inf"))
        hardest = similarity.amax(dim=1)
        training_stats.report(f"{stat}_top1", (positive > hardest).to(torch.float32))

    @torch.no_grad()
    def _report_margin(self, stat, query, key, queue: TimestampedQueue, margin, loss) -> None:
        """The forgetting term's size this step: mean m_i over the active negatives, and the nats it adds."""
        active = queue.active.to(margin.dtype)
        training_stats.report(f"{stat}_margin_mean", (margin * active).sum() / active.sum().clamp(min=1))
        plain = info_nce(query.detach(), key, queue.keys, self.options.tau, queue.active, None)
        training_stats.report(f"{stat}_margin_nats", loss.detach() - plain)

    def _query_features(self, ctx: PhaseContext, shared: Optional[torch.Tensor], img: torch.Tensor,
                        c: torch.Tensor) -> torch.Tensor:
        """The query's D features: the adversarial pass's (shared augmentation draw) or a fresh draw."""
        if shared is not None and self.options.cl_query_view == "shared":
            return shared
        return ctx.run_D(img, c)[1]

    def _key_mixing(self, ctx: PhaseContext):
        """The style-mixing draw for the perturbed key: the query's own, or a fresh one."""
        if self.options.cl_independent_mixing:
            return None
        if ctx.gen_mixing is not None:
            return ctx.gen_mixing
        num_ws = ctx.gen_ws.shape[1] if ctx.gen_ws is not None else self.num_ws
        return (ctx.gen_z, num_ws)  # cutoff = num_ws: no mixing, like the query

    def _fake_d_term(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        branch, options = self.fake, self.options
        if branch is None or ctx.gen_z is None or not (options.lambda_D > 0 or self._g_term_enabled()):
            return None  # nothing would use the term or the queue: draw no noise, run nothing
        query_features = self._query_features(ctx, ctx.gen_features, ctx.gen_img.detach(), ctx.gen_c)
        with torch.no_grad():
            z_key = perturb_latents(ctx.gen_z, options.noise_mode, options.noise_scale, options.noise_clamp)
            key_img, _ = ctx.run_G(z_key, ctx.gen_c, update_emas=False, mixing=self._key_mixing(ctx))
            _, key_features = ctx.run_D(key_img, ctx.gen_c, D=self.D_ema)
        query, key = branch.head(query_features, key_features)
        if options.enqueue == "key":
            branch.pending_keys.append(key)
        else:  # InsGen: key-head projection of the query fakes' (detached) features
            branch.pending_keys.append(branch.head.project_keys(query_features))
        if options.lambda_D <= 0:
            return None
        loss = self._nce(query, key, branch.queue, options.forgetting_mode, stat="Loss/contrastive/fake")
        training_stats.report("Loss/CL/fake_D", loss)
        return loss.mean() * options.lambda_D

    def _real_d_term(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        branch, options = self.real, self.options
        if branch is None or ctx.real_img is None or options.lambda_real <= 0:
            return None
        query_features = self._query_features(ctx, ctx.real_features, ctx.real_img.detach(), ctx.real_c)
        with torch.no_grad():
            _, key_features = ctx.run_D(ctx.real_img.detach(), ctx.real_c, D=self.D_ema)
        query, key = branch.head(query_features, key_features)
        branch.pending_keys.append(key)
        loss = self._nce(query, key, branch.queue, "off", stat="Loss/contrastive/real")
        training_stats.report("Loss/CL/real_D", loss)
        return loss.mean() * options.lambda_real

    def _fake_g_term(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        branch, options = self.fake, self.options
        if ctx.gen_img is None:
            return None
        query_features = self._query_features(ctx, ctx.gen_features, ctx.gen_img, ctx.gen_c)
        with torch.no_grad():
            _, key_features = ctx.run_D(ctx.gen_img.detach(), ctx.gen_c, D=self.D_ema)
        query, key = branch.head(query_features, key_features, frozen=True)
        mode = options.forgetting_mode if options.g_cl_forgetting else "off"
        loss = self._nce(query, key, branch.queue, mode)
        training_stats.report("Loss/CL/fake_G", loss)
        return loss.mean() * options.lambda_G


def build_contrastive(options: MethodOptions, env: MethodEnv) -> Optional[Method]:
    """The contrastive method the options describe, or None when no contrastive term is active.

    The heads apply the lazy-regularisation correction to env's (uncorrected) optimiser settings
    themselves; `env.seed` (the run's --seed) seeds their initialisation, identically on every rank.
    """
    if not contrastive_enabled(options):
        return None
    if options.cond_loss == "2c":
        if options.fake_head or options.real_head:
            raise ValueError("--method: the 2C loss cannot be combined with instance heads in one run")
        c_dim = int(getattr(env.G, "c_dim", 0) or getattr(env.D, "c_dim", 0))  # StudioGAN's D is unconditional
        return ContraGAN2CHook(env.D, options, device=env.device, c_dim=c_dim, D_opt_kwargs=env.D_opt_kwargs,
                               D_reg_interval=env.D_reg_interval, seed=env.seed, all_gather=env.all_gather,
                               world_size=env.world_size)
    method_class = InsGenHook if options.real_head else FakeCLRHook
    return method_class(env.D, options, device=env.device, G_opt_kwargs=env.G_opt_kwargs,
                        D_opt_kwargs=env.D_opt_kwargs, G_reg_interval=env.G_reg_interval,
                        D_reg_interval=env.D_reg_interval, total_kimg=env.total_kimg, batch_size=env.batch_size,
                        num_ws=getattr(env.G, "num_ws", None), seed=env.seed)


@register("fakeclr", order=3, preset={"ada_linear": True, "fake_head": True, "fqs_schedule": "linear",
                             "forgetting_mode": "paper", "noise_mode": "relative", "enqueue": "key"})
class FakeCLRHook(InstanceContrastHook):
    """FakeCLR: fake-only head, perturbed positives, time-stamped (diversity-aware) queue."""

    def __init__(self, D: torch.nn.Module, options: MethodOptions, **kwargs: Any):
        if options.real_head or not options.fake_head:
            raise ValueError("FakeCLRHook: FakeCLR uses the fake head only (real_head=False, fake_head=True)")
        super().__init__(D, options, **kwargs)


@register("insgen", order=2, preset={"fake_head": True, "real_head": True, "noise_mode": "fixed", "noise_clamp": None,
                            "forgetting_mode": "off", "enqueue": "query_momentum", "cl_independent_mixing": True})
class InsGenHook(InstanceContrastHook):
    """InsGen: real and fake instance heads with their own queues, fixed latent noise."""

    def __init__(self, D: torch.nn.Module, options: MethodOptions, **kwargs: Any):
        if not (options.real_head or options.fake_head):
            raise ValueError("InsGenHook: at least one of the real/fake heads must be enabled")
        super().__init__(D, options, **kwargs)


# ----------------------------------------------------------------------------
# ContraGAN 2C.

class ConditionalEmbedding(torch.nn.Module):
    """e = Linear(D features) and the class proxy p = Linear(label) (no bias), both d_embed_dim.

    The features are the epilogue's fc output [N, C] (StudioGAN) or the GAP of the 4x4 map (projection mode).
    """

    def __init__(self, feature_channels: int, c_dim: int, d_embed_dim: int = 512):
        super().__init__()
        self.embed = torch.nn.Linear(feature_channels, d_embed_dim)
        self.proxy = torch.nn.Linear(c_dim, d_embed_dim, bias=False)

    def forward(self, features: torch.Tensor, c: torch.Tensor, frozen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        w_e, b_e, w_p = self.embed.weight, self.embed.bias, self.proxy.weight
        if frozen:
            w_e, b_e, w_p = w_e.detach(), b_e.detach(), w_p.detach()
        e = torch.nn.functional.linear(pool_features(features).to(torch.float32), w_e, b_e)
        p = torch.nn.functional.linear(c.to(torch.float32), w_p)
        return e, p


@register("contragan", order=4, preset={"cond_loss": "2c"}, needs_labels=True)
class ContraGAN2CHook(Method):
    """2C on D (real embeddings, real labels) and on G (fake embeddings, sampled labels).

    contragan_mode 'studiogan': D is built unconditional (training.contrastive.presets.discriminator_label_dim),
    the label reaches D only through 2C, and the embedding reads the epilogue's fc output.
    'projection': StyleGAN2's projection-conditioned D plus 2C on the pooled 4x4 map.
    """

    @classmethod
    def create(cls, options: MethodOptions, env: MethodEnv) -> Optional[Method]:
        return build_contrastive(options, env)  # the options (not the name) pick the class: --no_fakeclr etc.

    def __init__(self, D: torch.nn.Module, options: MethodOptions, *, device: torch.device, c_dim: int,
                 D_opt_kwargs: dict[str, Any], D_reg_interval: Optional[int], feature_channels: Optional[int] = None,
                 seed: int = 0, all_gather: Callable[..., torch.Tensor], world_size: int):
        if c_dim <= 0:
            raise ValueError("--method=contragan: the 2C loss needs class labels; use --cond=True with a "
                             "dataset whose dataset.json has labels")
        if options.contragan_mode == "studiogan" and getattr(D.b4, "architecture", None) == "skip":
            raise ValueError("--contragan_mode=studiogan: the fc embedding needs a resnet/orig D architecture; "
                             "use --contragan_mode=projection with a skip D")
        self.options = options
        self.D = D
        self.all_gather = all_gather  # the loop's collective (MethodEnv.all_gather)
        self.world_size = int(world_size)
        channels = feature_channels or infer_feature_channels(D)
        self.head = _build_without_touching_rng(
            lambda: ConditionalEmbedding(channels, c_dim, options.d_embed_dim),
            head_init_seed(seed, FAKE_BRANCH)).to(device)
        self.optimizer = make_head_optimizer(self.head.parameters(), D_opt_kwargs, D_reg_interval)

    def needs_features(self, phase: str) -> bool:
        return self.options.lambda_2c > 0 and phase in D_PHASES + G_PHASES

    def needs_real_logits(self, phase: str) -> bool:
        return self.needs_features(phase) and phase in D_PHASES

    def loss_terms(self, ctx: PhaseContext) -> Optional[torch.Tensor]:
        if self.options.lambda_2c <= 0:
            return None
        if ctx.phase in D_PHASES and ctx.real_img is not None:
            features = ctx.real_features
            if features is None:
                _, features = ctx.run_D(ctx.real_img.detach(), ctx.real_c)
            return self._term(features, ctx.real_c, frozen=False, stat="Loss/2C/D")
        if ctx.phase in G_PHASES and ctx.gen_img is not None:
            features = ctx.gen_features
            if features is None:
                _, features = ctx.run_D(ctx.gen_img, ctx.gen_c)
            return self._term(features, ctx.gen_c, frozen=True, stat="Loss/2C/G")
        return None

    def _term(self, features, c, frozen: bool, stat: str) -> torch.Tensor:
        if self.options.contragan_mode == "studiogan":
            features = self.D.b4.penultimate(features)  # same batch, so the same minibatch-std groups
        e, p = self.head(features, c, frozen=frozen)
        e, p = self.all_gather(e, keep_grad=True), self.all_gather(p, keep_grad=True)
        labels = self.all_gather(c)
        loss = contrastive_2c_loss(e, p, labels, self.options.tau_2c)
        training_stats.report(stat, loss)
        # Each rank sees the gathered batch but owns only its slice's gradient; x world size
        # makes the DDP-averaged gradient equal that of the global mean.
        return loss.mean() * (self.options.lambda_2c * self.world_size)

    def phase_optimizers(self, phase: str) -> list[torch.optim.Optimizer]:
        return [self.optimizer] if phase in D_PHASES and self.options.lambda_2c > 0 else []

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"cond_embedding": self.head}

    def state_dict(self) -> dict[str, Any]:
        return {"modules": {"cond_embedding": self.head.state_dict()}, "optimizers": {"cond_embedding": self.optimizer.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "cond_embedding" not in state.get("modules", {}):
            raise ValueError("resume: the snapshot has no 2C embedding state; resume with --method=contragan")
        self.head.load_state_dict(state["modules"]["cond_embedding"])
        self.optimizer.load_state_dict(state["optimizers"]["cond_embedding"])

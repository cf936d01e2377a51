"""The training loop: G, D, G_ema (and a method's momentum copies) through the loss phases.

Read top-down: `training_loop()` builds a `Trainer`, whose `run()` alternates `train_step()`
with per-tick `maintenance()` (status line, grids, snapshot, metrics, stats). Everything a
resumed run needs to continue bit-for-bit (optimiser states, counters, ADA p, queues, RNG
streams) travels in the snapshot under `resume_state`.

Randomness: the latents and conditioning labels of every iteration are drawn for the whole
global batch from streams seeded identically on all ranks, and each rank takes its own rows,
so a 2-process run sees the same samples as a 1-process run. Augmentation, style mixing and
the path-length noise use the per-rank global RNG (seed x num_gpus + rank), as upstream.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from typing import Callable, Optional

import numpy as np
import psutil
import torch

import dnnlib
from dnnlib.util import atomic_append_line
from torch_utils import misc, training_stats
from training import checkpoint, distributed, image_grid, network_pickle, speed
from training import run_dir as rundir
from training.ada import make_ada_controller
from training.contrastive.presets import MethodOptions, discriminator_label_dim
from training.defaults import with_loop_defaults
from training.method_stack import build_method
from training.phase_steps import begin_phase, finish_phase
from training.phases import build_phases
from training.stop_request import StopRequest
from training.devices import default_device

# ADA's reflect padding and blit/resample split change tensor shapes on every call; each new shape adds a
# oneDNN primitive to a cache of 1024 by default (+0.35 GB RSS at 32 px once p > 0). 64 costs no speed.
ONEDNN_CACHE_ENV, ONEDNN_CACHE_CAPACITY = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64"


def training_loop(training_options: dict, rank: int = 0, device: Optional[torch.device] = None,
                  abort_fn: Optional[Callable[[], bool]] = None, stop: Optional["StopRequest"] = None,
                  resume: Optional[checkpoint.Resume] = None) -> dict:
    """Train with the options of training_options.json; returns a small summary (for tests/tools).

    `stop`: an installed StopRequest (train.py installs one before start-up work); by default the
    loop installs its own for the duration of the run. `resume`: resume_pkl as train.py already
    read it (see training/checkpoint.py); without it the loop reads the pickle itself."""
    trainer = Trainer(dnnlib.EasyDict(training_options), rank=rank, device=device, abort_fn=abort_fn, stop=stop,
                      resume=resume)
    return trainer.run()


class Trainer:
    def __init__(self, training_options: dnnlib.EasyDict, rank: int, device: Optional[torch.device],
                 abort_fn: Optional[Callable[[], bool]], stop: Optional[StopRequest] = None,
                 resume: Optional[checkpoint.Resume] = None):
        self.training_options = with_loop_defaults(training_options)  # training_options.json + loop defaults
        self.given_resume = resume
        self.speed = speed.speed_options(self.training_options)
        self.rank = rank
        self.num_gpus = int(self.training_options.num_gpus)
        self.device = device or default_device(rank)
        self.abort_fn = abort_fn
        self.stop = stop if stop is not None else StopRequest()
        self.owns_stop = stop is None
        self.run_dir = self.training_options.get("run_dir")
        self.cur_nimg = 0
        self.cur_tick = 0
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.tb_writer = None
        self.stats_jsonl = None

    # ------------------------------------------------------------------ top level

    def run(self) -> dict:
        if self.owns_stop:
            self.stop.install()  # before the start-up work: a signal then stops after the first step
        try:
            self.setup()
            return self.loop()
        finally:
            if self.owns_stop:
                self.stop.uninstall()
            if self.tb_writer is not None:
                self.tb_writer.close()

    def setup(self) -> None:
        options = self.training_options
        self.start_time = time.time()
        self.seed_everything()
        self.configure_torch()
        self.load_dataset()
        self.build_networks()
        resume = self.load_resume_data()
        self.build_augmentation()
        self.method = self.build_method()
        if resume is not None and self.rank == 0:
            checkpoint.restore_networks(resume, dict(G=self.G, D=self.D, G_ema=self.G_ema), self.augment_pipe,
                                        self.method)
        for module in (self.G, self.D, self.G_ema, self.augment_pipe, *self.method_modules().values()):
            distributed.broadcast_module(module)
        self.build_loss_and_phases()
        if resume is not None and resume.exact:
            progress = checkpoint.restore_progress(
                resume.state, rank=self.rank, phases=self.phases, loss=self.loss, method=self.method, ada=self.ada,
                latent_gen=self.latent_gen, label_rng=self.label_rng, device=self.device)
            self.cur_nimg, self.cur_tick, self.batch_idx = progress.cur_nimg, progress.cur_tick, progress.batch_idx
        if resume is not None:
            resume.release()
        # Neither the loader's worker seeding nor the grids may consume the training RNG streams
        # (an exact resume restores those streams before reaching this point).
        with _isolated_rng(self.device):
            self.open_data_iterator()
            if self.rank == 0:
                self.write_initial_grids()
                self.open_stats_writers()
        self.collector = training_stats.Collector(regex=".*")
        # The tick's own counts only: the main collector keeps a statistic's previous value through ticks
        # that did not report it (e.g. Dreg runs every 16 steps), which would repeat an old warning.
        self.nonfinite_collector = training_stats.Collector(regex="Debug/(nonfinite_grad|finite_loss)/.*",
                                                            keep_previous=False)
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.last_output_time = self.tick_start_time
        self.maintenance_time = 0.0
        self.printed_tick0 = False
        if self.rank == 0:
            if options.get("continued_run"):  # marks each restart in log.txt (stats and metric files simply go on)
                source = os.path.basename(options.resume_pkl) if options.get("resume_pkl") else "zero (no snapshot yet)"
                print(f"resumed at kimg {self.cur_nimg / 1000:g} from {source}", flush=True)
            until = f" (stopping at {options.stop_kimg:g})" if options.get("stop_kimg") is not None else ""
            print(f"Training for {options.total_kimg:g} kimg{until} from {self.cur_nimg / 1000:g} kimg...", flush=True)

    @property
    def end_kimg(self) -> float:
        """Where this process stops: --stop-kimg, or the end of the --kimg schedule."""
        stop = self.training_options.get("stop_kimg")
        return self.training_options.total_kimg if stop is None else min(stop, self.training_options.total_kimg)

    def loop(self) -> dict:
        options = self.training_options
        while True:
            self.train_step()
            done = self.cur_nimg >= self.end_kimg * 1000
            stop = self.stop_requested()
            tick_due = self.cur_nimg >= self.tick_start_nimg + options.kimg_per_tick * 1000
            if not (done or stop or tick_due or not self.printed_tick0):
                self.print_progress_if_quiet()
                continue
            self.printed_tick0 = True
            self.maintenance(done=done or stop)
            if done or stop:
                break
        if self.rank == 0:
            print("Exiting...", flush=True)
        return dict(cur_nimg=self.cur_nimg, cur_tick=self.cur_tick, batch_idx=self.batch_idx,
                    stopped_early=bool(self.cur_nimg < self.end_kimg * 1000),  # by a signal or abort_fn
                    last_snapshot=getattr(self, "last_snapshot", None))

    # ------------------------------------------------------------------ setup steps

    def seed_everything(self) -> None:
        seed = int(self.training_options.random_seed)
        rank_seed = seed * self.num_gpus + self.rank
        random.seed(rank_seed)
        np.random.seed(rank_seed)
        torch.manual_seed(rank_seed)
        # Shared streams: identical on every rank (each rank slices its own rows).
        self.latent_gen = torch.Generator(device=self.device)
        self.latent_gen.manual_seed(seed)
        self.label_rng = np.random.RandomState(seed)

    def configure_torch(self) -> None:
        os.environ.setdefault(ONEDNN_CACHE_ENV, ONEDNN_CACHE_CAPACITY)  # read at the process's first CPU conv
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        speed.configure_backends(self.device, self.training_options.cudnn_benchmark, self.training_options.allow_tf32)

    def load_dataset(self) -> None:
        self.training_set = dnnlib.util.construct_class_by_name(**self.training_options.training_set_kwargs)
        if self.rank == 0:
            print(f"Dataset: {len(self.training_set)} images, shape {list(self.training_set.image_shape)}, "
                  f"label shape {list(self.training_set.label_shape)}", flush=True)

    def build_networks(self) -> None:
        options, dataset = self.training_options, self.training_set
        common = dict(c_dim=dataset.label_dim, img_resolution=dataset.resolution, img_channels=dataset.num_channels)
        D_label_dim = discriminator_label_dim(self.method_options(), dataset.label_dim)  # 2C: maybe unconditional
        D_common = dict(common, c_dim=D_label_dim)
        self.G = dnnlib.util.construct_class_by_name(**options.G_kwargs, **common)
        self.D = dnnlib.util.construct_class_by_name(**options.D_kwargs, **D_common)
        self.G, self.D = (net.train().requires_grad_(False).to(self.device) for net in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval()
        if self.speed.channels_last:  # before D_ema copies and optimiser states exist
            speed.apply_channels_last(self.G, self.D, self.G_ema)

    def load_resume_data(self) -> Optional[checkpoint.Resume]:
        """The resume pickle as train.py read it, or read now (rank 0 copies weights; the broadcast reaches
        the other ranks; each rank restores its own RNG streams)."""
        given, self.given_resume = self.given_resume, None  # the loaded networks are not kept beyond the restore
        resume = checkpoint.resume_for_run(self.training_options, given)
        if resume is None:
            return None
        if self.rank == 0:
            print(f'Resuming from "{resume.path}"', flush=True)
        if self.rank == 0 and resume.state is not None and not resume.exact:
            print("Resume: the snapshot's training options differ; copying weights only (counters restart).",
                  flush=True)
        return resume

    def build_augmentation(self) -> None:
        options = self.training_options
        self.augment_pipe = None
        if options.get("augment_kwargs") and (options.augment_p > 0 or options.ada_target is not None):
            self.augment_pipe = dnnlib.util.construct_class_by_name(**options.augment_kwargs)
            self.augment_pipe = self.augment_pipe.train().requires_grad_(False).to(self.device)
            self.augment_pipe.p.copy_(torch.as_tensor(options.augment_p))
        aug = "ada" if options.ada_target is not None else ("fixed" if self.augment_pipe is not None else "noaug")
        self.ada = make_ada_controller(aug, target=options.ada_target, ada_linear=self.method_options().ada_linear,
                                       total_kimg=options.total_kimg, ada_kimg=options.ada_kimg,
                                       interval=options.ada_interval)

    def method_options(self) -> MethodOptions:
        method_kwargs = self.training_options.get("method_kwargs")
        return MethodOptions.from_dict(method_kwargs) if method_kwargs else MethodOptions()

    def build_method(self):
        options = self.training_options
        return build_method(self.method_options(), self.G, self.D, self.device, G_opt_kwargs=options.G_opt_kwargs,
                            D_opt_kwargs=options.D_opt_kwargs, G_reg_interval=options.G_reg_interval,
                            D_reg_interval=options.D_reg_interval, total_kimg=options.total_kimg,
                            batch_size=options.batch_size,
                            seed=int(options.random_seed), world_size=self.num_gpus)

    def method_modules(self) -> dict[str, torch.nn.Module]:
        return self.method.modules() if self.method is not None else {}

    def build_loss_and_phases(self) -> None:
        options = self.training_options
        loss_kwargs = {k: v for k, v in options.loss_kwargs.items() if k != "class_name"}
        self.loss = dnnlib.util.construct_class_by_name(
            class_name=options.loss_kwargs.class_name, device=self.device, G_mapping=self.G.mapping,
            G_synthesis=self.G.synthesis, D=self.D, augment_pipe=self.augment_pipe, method=self.method, **loss_kwargs)
        G_opt_kwargs = speed.optimizer_kwargs(options.G_opt_kwargs, self.speed.fused_adam, self.device)
        D_opt_kwargs = speed.optimizer_kwargs(options.D_opt_kwargs, self.speed.fused_adam, self.device)
        self.phases = (build_phases("G", self.G, G_opt_kwargs, options.G_reg_interval)
                       + build_phases("D", self.D, D_opt_kwargs, options.D_reg_interval))
        self.phase_timers = {phase.name: 0.0 for phase in self.phases}
        self.phase_speed = speed.PhaseSpeed(self.loss, self.device, bf16=self.speed.bf16, compile=self.speed.compile,
                                            compile_backend=self.speed.compile_backend)

    def open_data_iterator(self) -> None:
        options = self.training_options
        per_rank = options.batch_size // self.num_gpus
        consumed = self.batch_idx * per_rank
        sampler = misc.InfiniteSampler(self.training_set, rank=self.rank, num_replicas=self.num_gpus,
                                       seed=options.random_seed, start=consumed)
        loader_kwargs = dict(options.data_loader_kwargs)
        loader_kwargs["pin_memory"] = bool(loader_kwargs.get("pin_memory")) and self.device.type == "cuda"
        if int(loader_kwargs.get("num_workers", 0)) == 0:
            loader_kwargs.pop("prefetch_factor", None)
        else:
            loader_kwargs["persistent_workers"] = True
        loader = torch.utils.data.DataLoader(self.training_set, sampler=sampler, batch_size=per_rank, **loader_kwargs)
        self.data_iter = iter(loader)

    def write_initial_grids(self) -> None:
        if self.run_dir is None:
            self.grid_size = None
            return
        grid = tuple(self.training_options.image_grid) if self.training_options.get("image_grid") else None
        self.grid_size, images, labels = image_grid.setup_snapshot_image_grid(self.training_set, grid=grid)
        reals = os.path.join(self.run_dir, "reals.png")
        with rundir.reporting_write_errors(reals):
            image_grid.save_image_grid(images, reals, drange=[0, 255], grid=self.grid_size)
        gen = torch.Generator().manual_seed(0)
        self.grid_z = torch.randn([labels.shape[0], self.G.z_dim], generator=gen).to(self.device)
        self.grid_c = torch.from_numpy(labels).to(self.device)
        self.write_fakes_grid("fakes_init.png")

    def open_stats_writers(self) -> None:
        if self.run_dir is None:
            return
        self.stats_jsonl = os.path.join(self.run_dir, "stats.jsonl")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb_writer = SummaryWriter(self.run_dir)
        except ImportError as err:
            print(f"Skipping tensorboard export ({err})", flush=True)

    # ------------------------------------------------------------------ one iteration

    def train_step(self) -> None:
        options = self.training_options
        real_img, real_c = self.next_real_batch()
        all_z, all_c = self.draw_latents_and_labels()
        if self.method is not None:
            self.method.begin_iteration(self.cur_nimg, self.batch_idx)
        rounds = real_img.shape[0] // options.batch_gpu
        for phase, phase_z, phase_c in zip(self.phases, all_z, all_c):
            if self.batch_idx % phase.interval != 0:
                continue
            self.run_phase(phase, real_img, real_c, phase_z, phase_c, rounds)
        if self.method is not None:
            self.method.end_iteration(self.cur_nimg, self.batch_idx)
        self.update_G_ema()
        self.cur_nimg += options.batch_size
        self.batch_idx += 1
        adaptive = [(self.ada, self.augment_pipe), *(self.method.adaptive_probabilities() if self.method else [])]
        for controller, holder in adaptive:  # ADA's p, then a method's (e.g. APA's); each acts on its cadence
            controller.update(holder, batch_idx=self.batch_idx, cur_nimg=self.cur_nimg, batch_size=options.batch_size)

    def next_real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = next(self.data_iter)
        images = images.to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1
        return images, labels.to(self.device, non_blocking=True)

    def draw_latents_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[num_phases, per-rank batch, ...] latents and labels; this rank's rows of the global draw."""
        options = self.training_options
        shape = [len(self.phases), options.batch_size, self.G.z_dim]
        z = torch.randn(shape, generator=self.latent_gen, device=self.device)[:, self.rank::self.num_gpus]
        idx = self.label_rng.randint(len(self.training_set), size=len(self.phases) * options.batch_size)
        labels = np.stack([self.training_set.get_label(int(i)) for i in idx])
        labels = labels.reshape(len(self.phases), options.batch_size, -1)
        c = speed.to_device(torch.from_numpy(labels[:, self.rank::self.num_gpus]), self.device)  # no host sync
        return z, c

    def run_phase(self, phase, real_img, real_c, phase_z, phase_c, rounds: int) -> None:
        options = self.training_options
        start = time.perf_counter()
        begin_phase(phase.name, phase.opt, self.method)
        phase.module.requires_grad_(True)
        gain = phase.interval / rounds  # gradient = mean over the whole global batch
        self.phase_speed.enter(phase.name)  # compiled networks / bf16 autocast in Gmain and Dmain only
        for real, c, z, gc in zip(real_img.split(options.batch_gpu), real_c.split(options.batch_gpu),
                                  phase_z.split(options.batch_gpu), phase_c.split(options.batch_gpu)):
            self.loss.accumulate_gradients(phase=phase.name, real_img=real, real_c=c, gen_z=z, gen_c=gc,
                                           gain=gain)
        phase.module.requires_grad_(False)
        finish_phase(phase.name, phase.opt, self.method)  # the phase's step, then the method's (heads after D's)
        self.phase_timers[phase.name] += time.perf_counter() - start

    @torch.no_grad()
    def update_G_ema(self) -> None:
        options = self.training_options
        ema_nimg = options.ema_kimg * 1000
        if options.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * options.ema_rampup)
        beta = 0.5 ** (options.batch_size / max(ema_nimg, 1e-8))
        misc.ema_update_(self.G_ema, self.G, beta)

    def stop_requested(self) -> bool:
        flag = self.stop.requested or (self.abort_fn is not None and self.abort_fn())
        if distributed.is_distributed():
            if self.batch_idx % self.training_options.ada_interval != 0:  # agree without a sync every iteration
                return False
            return distributed.any_rank(flag, self.device)
        return flag

    # ------------------------------------------------------------------ per-tick maintenance

    def maintenance(self, done: bool) -> None:
        options = self.training_options
        tick_end_time = time.time()
        self.print_status_line(tick_end_time)
        self.nonfinite_collector.update()  # before the snapshot: a diverged run keeps its last finite one
        nonfinite = self.nonfinite_collector.as_dict()
        self.warn_nonfinite(nonfinite)
        self.stop_if_diverged(nonfinite)
        snapshot_due = done or (self.cur_tick % options.network_snapshot_ticks == 0)
        image_ticks = options.image_snapshot_ticks
        image_due = image_ticks is not None and (done or self.cur_tick % image_ticks == 0)
        # Maintenance draws random numbers (metrics); keep them out of the training streams.
        with _isolated_rng(self.device):
            label = self.tick_label() if (image_due or snapshot_due) and self.run_dir is not None else None
            if image_due and self.rank == 0 and self.run_dir is not None:
                self.write_fakes_grid(rundir.fakes_grid_file(label))
            snapshot_pkl = None
            if options.network_snapshot_ticks is not None and snapshot_due and self.run_dir is not None:
                snapshot_pkl, snapshot_G_ema = self.save_snapshot(label)
                self.evaluate_metrics(snapshot_pkl, snapshot_G_ema)
        self.write_stats(tick_end_time)
        self.cur_tick += 1
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance_time = self.tick_start_time - tick_end_time

    def tick_label(self) -> str:
        """This tick's snapshot/grid label; rank 0 alone writes, so it alone looks at the run's files."""
        if self.rank != 0:
            return rundir.kimg_label(self.cur_nimg, self.training_options.kimg_per_tick)
        return rundir.free_tick_label(self.run_dir, self.cur_nimg, self.training_options.kimg_per_tick)

    def print_progress_if_quiet(self) -> None:
        """Within a long tick, a short line at least every `progress_sec` seconds (rank 0)."""
        options, now = self.training_options, time.time()
        if self.rank != 0 or now - self.last_output_time < options.progress_sec:
            return
        self.last_output_time = now
        img_per_sec = (self.cur_nimg - self.tick_start_nimg) / max(now - self.tick_start_time, 1e-8)
        tick_end = min(self.tick_start_nimg / 1000 + options.kimg_per_tick, self.end_kimg)  # the last tick is cut
        print(f"... kimg {self.cur_nimg / 1000:.3f} (tick {self.cur_tick} ends at {tick_end:.3f}), "
              f"{img_per_sec:.1f} img/s", flush=True)

    def print_status_line(self, tick_end_time: float) -> None:
        options = self.training_options
        tick_time = tick_end_time - self.tick_start_time
        kimg_done = max(self.cur_nimg - self.tick_start_nimg, 1) / 1000
        total = tick_end_time - self.start_time
        gpu_mem = torch.cuda.max_memory_allocated(self.device) / 2 ** 30 if self.device.type == "cuda" else 0.0
        cpu_mem = psutil.Process(os.getpid()).memory_info().rss / 2 ** 30
        p = float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0
        eta = max(self.end_kimg * 1000 - self.cur_nimg, 0) / 1000 * (tick_time / kimg_done)
        fields = [
            f"tick {training_stats.report0('Progress/tick', self.cur_tick):<5d}",
            f"kimg {training_stats.report0('Progress/kimg', self.cur_nimg / 1000):<9.3f}",
            f"time {dnnlib.util.format_time(training_stats.report0('Timing/total_sec', total)):<12s}",
            f"sec/tick {training_stats.report0('Timing/sec_per_tick', tick_time):<7.1f}",
            f"sec/kimg {training_stats.report0('Timing/sec_per_kimg', tick_time / kimg_done):<7.2f}",
            f"maintenance {training_stats.report0('Timing/maintenance_sec', self.maintenance_time):<6.1f}",
            f"cpumem {training_stats.report0('Resources/cpu_mem_gb', cpu_mem):<6.2f}",
            f"gpumem {training_stats.report0('Resources/peak_gpu_mem_gb', gpu_mem):<6.2f}",
            f"augment {training_stats.report0('Progress/augment', p):.3f}",
            f"eta {dnnlib.util.format_time(training_stats.report0('Timing/eta_sec', eta))}",
        ]
        training_stats.report0("Timing/total_hours", total / 3600)
        training_stats.report0("Timing/total_days", total / 86400)
        for name, seconds in self.phase_timers.items():
            training_stats.report0(f"Timing/{name}", seconds * 1000)
            self.phase_timers[name] = 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.rank == 0:
            print(" ".join(fields), flush=True)
            self.last_output_time = time.time()

    @torch.no_grad()
    def write_fakes_grid(self, file_name: str) -> None:
        if self.grid_size is None:
            return
        batch_gpu = self.training_options.batch_gpu
        images = [self.G_ema(z=z, c=c, noise_mode="const").cpu()
                  for z, c in zip(self.grid_z.split(batch_gpu), self.grid_c.split(batch_gpu))]
        path = os.path.join(self.run_dir, file_name)
        with rundir.reporting_write_errors(path):
            image_grid.save_image_grid(torch.cat(images).numpy(), path, drange=[-1, 1], grid=self.grid_size)

    def save_snapshot(self, label: str) -> tuple[str, torch.nn.Module]:
        """network-snapshot-<label>.pkl with the networks and everything an exact resume needs."""
        options = self.training_options
        if self.num_gpus > 1:
            for module in (self.G, self.D, self.G_ema, *self.method_modules().values()):
                misc.check_ddp_consistency(module, ignore_regex=r".*\.[^.]+_(avg|ema)")
        snapshot = dict(training_set_kwargs=dict(options.training_set_kwargs))
        for name in ("G", "D", "G_ema", "augment_pipe"):
            module = getattr(self, name)
            snapshot[name] = None if module is None else copy.deepcopy(module).eval().requires_grad_(False).cpu()
        state = self.resume_state()  # every rank's RNG is gathered into it
        path = os.path.join(self.run_dir, rundir.snapshot_file(label))
        if self.rank == 0:
            snapshot["resume_state"] = state
            with rundir.reporting_write_errors(path):
                network_pickle.save_network_pkl(path, snapshot)
            self.last_snapshot = path
        distributed.barrier()
        return path, snapshot["G_ema"]

    def resume_state(self) -> dict:
        """What an exact resume needs (a collective: every rank's RNG streams are gathered into it)."""
        rng = distributed.gather_objects(checkpoint.capture_rng(self.latent_gen, self.label_rng, self.device))
        progress = checkpoint.Progress(self.cur_nimg, self.cur_tick, self.batch_idx)
        return checkpoint.make_resume_state(self.training_options, progress, phases=self.phases, loss=self.loss,
                                            method=self.method, ada=self.ada, rng_by_rank=rng)

    def evaluate_metrics(self, snapshot_pkl: str, G_ema: torch.nn.Module) -> None:
        options = self.training_options
        if not options.metrics:
            return
        from metrics import metric_main  # imported lazily: detectors are only needed when metrics run

        if self.rank == 0:
            print("Evaluating metrics...", flush=True)
        G = copy.deepcopy(G_ema).to(self.device)
        results = metric_main.calc_metrics(options.metrics, G, options.training_set_kwargs, num_gpus=self.num_gpus,
                                           rank=self.rank, device=self.device)
        for result in results:  # FID/KID/PR of the same detector and counts share one feature pass
            if self.rank == 0:
                with rundir.reporting_write_errors(os.path.join(self.run_dir, f"metric-{result['metric']}.jsonl")):
                    metric_main.report_metric(result, run_dir=self.run_dir, snapshot_pkl=snapshot_pkl)
                if self.tb_writer is not None:
                    for key, value in result.results.items():
                        self.tb_writer.add_scalar(f"Metrics/{key}", value, global_step=int(self.cur_nimg / 1e3))

    def write_stats(self, tick_end_time: float) -> None:
        self.collector.update()
        stats = self.collector.as_dict()
        if self.rank != 0:
            return
        if self.stats_jsonl is not None:
            with rundir.reporting_write_errors(self.stats_jsonl):
                atomic_append_line(self.stats_jsonl, json.dumps(dict(stats, timestamp=time.time())))
        if self.tb_writer is not None:
            global_step = int(self.cur_nimg / 1e3)
            walltime = tick_end_time - self.start_time
            for name, value in stats.items():
                self.tb_writer.add_scalar(name, value["mean"], global_step=global_step, walltime=walltime)
            self.tb_writer.flush()

    def stop_if_diverged(self, stats: dict) -> None:
        """Every G or D loss of the tick non-finite (NaN labels or data, a diverged network): a snapshot would
        only hold garbage, so stop with one line naming the last finite snapshot (every rank sees the same sums)."""
        diverged = [name.rsplit("/", 1)[-1] for name, value in sorted(stats.items())
                    if name.startswith("Debug/finite_loss/") and value["num"] > 0 and value["mean"] == 0]
        if not diverged:
            return
        last = getattr(self, "last_snapshot", None) or self.training_options.get("resume_pkl")
        kept = f"the last finite snapshot is {os.path.basename(last)}" if last else "no snapshot was written"
        raise rundir.TrainingDiverged(
            f"the {' and '.join(diverged)} losses were non-finite for the whole tick ending at kimg "
            f"{self.cur_nimg / 1000:g}, so training stopped without a snapshot ({kept}); check the dataset's labels "
            f"and images, or lower --gamma or the learning rate, then resume")

    def warn_nonfinite(self, stats: dict) -> None:
        for name, value in stats.items():
            if name.startswith("Debug/nonfinite_grad/") and value["mean"] > 0 and self.rank == 0:
                phase = name.rsplit("/", 1)[-1]
                print(f"Warning: non-finite gradients in phase {phase} during this tick "
                      f"({value['mean'] * value['num']:.0f} elements, replaced by 0 / +-1e5)", flush=True)


# ----------------------------------------------------------------------------
# Running a block without touching the training RNG streams.


@contextlib.contextmanager
def _isolated_rng(device: torch.device):
    """Run a block without disturbing the training RNG streams (torch, CUDA, numpy, python)."""
    devices = [device] if device.type == "cuda" else []
    np_state = np.random.get_state()
    py_state = random.getstate()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

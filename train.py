"""Train a GAN: StyleGAN2-ADA with FakeCLR, InsGen, ADA-Linear or ContraGAN 2C.

Same command line as NVlabs stylegan2-ada-pytorch, plus the FakeCLR / InsGen flags and --method.
Examples:
    python train.py --outdir=runs --data=datasets/emoji-smileys --cfg=tiny --kimg=2 --metrics=none
    python train.py --outdir=runs --data=ffhq2k.zip --method=fakeclr --cfg=paper256 --mirror=True --batch=64 --gpus=1
See docs/training.md for every option.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from typing import Any, Optional

import click

import dnnlib
from dnnlib import cli_errors
from training import devices, preflight
from training import run_dir as rundir
from training.config import (AUGPIPE_NAMES, CFG_NAMES, ConfigError, DatasetInfo, build_training_options,
                             next_run_dir, validate_basic, with_defaults)
from training.resume_plan import RESUME_MODES, inherit_transfer_settings, number_from_options, plan_resume
from training.method_cli import MethodName, method_options, pop_method_overrides
from training.method_registry import method_default_aug, method_names
from training.run_dir import RunWriteError


@click.command(context_settings=dict(max_content_width=120))
@click.pass_context
# General options.
@click.option("--outdir", help="Where to save the results", required=True, metavar="DIR", callback=cli_errors.expand_user)
@click.option("--gpus", help="Number of GPUs [default: 1; WORLD_SIZE under torchrun]", type=int, default=None, metavar="INT")
@click.option("--cpu-procs", "--cpu_procs", "cpu_procs", help="Run --gpus=N processes on the CPU (no GPUs needed) [default: false]",
              type=bool, default=False, metavar="BOOL")
@click.option("--snap", help="Snapshot interval in ticks [default: 50]", type=int, default=50, metavar="INT")
@click.option("--metrics", help='Comma-separated metrics or "none" [default: fid50k_full; none on a CPU]', type=str, default=None)
@click.option("--grid", help="Images in the fakes/reals grids, WxH [default: upstream's layout, at most 8x8]", metavar="WxH")
@click.option("--seed", help="Random seed [default: 0]", type=int, default=0, metavar="INT")
@click.option("-n", "--dry-run", help="Print training options and exit", is_flag=True)
# Dataset.
@click.option("--data", help="Training data (directory or zip)", metavar="PATH", required=True, callback=cli_errors.expand_user)
@click.option("--cond", help="Train conditional model based on dataset labels [default: false]", type=bool, default=False, metavar="BOOL")
@click.option("--subset", help="Train with only N images [default: all]", type=int, metavar="INT")
@click.option("--mirror", help="Enable dataset x-flips [default: false]", type=bool, default=False, metavar="BOOL")
# Base config.
@click.option("--cfg", help="Base config [default: auto]", type=click.Choice(CFG_NAMES), default="auto")
@click.option("--gamma", help="Override R1 gamma", type=float)
@click.option("--kimg", help="Override training duration (fractions allowed)", type=float, metavar="KIMG")
@click.option("--tick", help="Progress tick interval in kimg [default: 4]", type=float, metavar="KIMG")
@click.option("--batch", help="Override batch size", type=int, metavar="INT")
# Discriminator augmentation.
@click.option("--aug", help="Augmentation mode [default: ada]", type=click.Choice(["noaug", "ada", "fixed"]))
@click.option("--p", help="Augmentation probability for --aug=fixed", type=float)
@click.option("--target", help="ADA target value for --aug=ada [default: 0.6]", type=float)
@click.option("--ada-kimg", "--ada_kimg", "ada_kimg", type=float, metavar="KIMG",
              help="ADA speed: kimg for p to move by 1 [default: 500; 100 from a published network]")
@click.option("--augpipe", help="Augmentation pipeline [default: bgc]", type=click.Choice(AUGPIPE_NAMES))
# Transfer learning and resume.
@click.option("--resume", help="Resume from a preset name, pickle, URL, run directory or 'latest' [default: noresume]", metavar="PKL",
              callback=cli_errors.expand_user)
@click.option("--resume-mode", "--resume_mode", "resume_mode", type=click.Choice(RESUME_MODES), default="continue",
              help="For a run directory or 'latest': continue in that directory, or start a new one [default: continue]")
@click.option("--freezed", help="Freeze-D: number of D layers to freeze [default: 0]", type=int, metavar="INT")
# Performance options.
@click.option("--fp32", help="Disable mixed-precision training", type=bool, metavar="BOOL")
@click.option("--nhwc", help="Use NHWC memory format with FP16", type=bool, metavar="BOOL")
@click.option("--nobench", help="Disable cuDNN benchmarking", type=bool, metavar="BOOL")
@click.option("--allow-tf32", "allow_tf32", help="Allow PyTorch to use TF32 internally", type=bool, metavar="BOOL")
@click.option("--workers", help="Override number of DataLoader workers [default: 3, at most the cores - 1]", type=int, metavar="INT")
@click.option("--bf16", help="bfloat16 autocast for G/D in Gmain and Dmain [default: false]", type=bool, metavar="BOOL")
@click.option("--channels-last", "--channels_last", "channels_last", help="NHWC memory format in every G/D block [default: false]",
              type=bool, metavar="BOOL")
@click.option("--compile", "compile", help="torch.compile G and D for Gmain and Dmain; eager if it fails [default: false]",
              type=bool, metavar="BOOL")
@click.option("--compile-backend", "--compile_backend", "compile_backend", help="torch.compile backend [default: inductor]",
              type=str, metavar="NAME")
@click.option("--fused-adam", "--fused_adam", "fused_adam", help="torch.optim.Adam(fused=True) for G and D [default: false]",
              type=bool, metavar="BOOL")
# Methods (FakeCLR / InsGen / ContraGAN).
@click.option("--method", help="Training method, or a base method + add-ons, e.g. ada+lecam [default: ada]; "
              f"one of {', '.join(method_names())}", type=MethodName())
@click.option("--ada_linear", "--ada-linear", "ada_linear", help="Linear p ramp to --target over --kimg (ADA-Linear)", type=bool)
@click.option("--no_insgen", "--no-insgen", "no_insgen", help="Disable InsGen's contrastive heads", type=bool)
@click.option("--no_fakeclr", "--no-fakeclr", "no_fakeclr", help="Disable FakeCLR's contrastive head", type=bool)
@click.option("--no_cl_on_g", "--no-cl-on-g", "no_cl_on_g", help="Drop the contrastive term from G's loss", type=bool)
@click.option("--rqs", help="Real queue length (InsGen) [default: 5% of the data, x2 with --mirror]", type=int, metavar="INT")
@click.option("--fqs", help="Fake queue length (start of the shrinking FakeCLR queue) [default: FakeCLR max(5% of the "
              "data x2 with --mirror, 4 x --batch); InsGen and --fakeclr-code-compat 5% of the data]", type=int,
              metavar="INT")
@click.option("--forgetting", help="FakeCLR forgetting factor: paper (eq. 11), code (constant +1), off "
              "[default: the preset's, paper for fakeclr]", type=click.Choice(["paper", "code", "off"]))
@click.option("--fakeclr-code-compat", "code_compat", help="Reproduce the released FakeCLR code where it differs from the paper", is_flag=True)
@method_options
def main(ctx: click.Context, **kwargs: Any) -> None:
    """Train a GAN (StyleGAN2-ADA backbone) with the method of your choice."""
    dry_run = kwargs.pop("dry_run")
    with stop_on_signal_during_startup():
        try:
            opts, run_dir = resolve_options(kwargs)
        except (ConfigError, ValueError, FileNotFoundError) as err:
            if cli_errors.debugging():  # FAKECLR_DEBUG=1: the traceback, for bug reports
                raise
            raise click.ClickException(str(err).splitlines()[0]) from None
        except RunComplete as done:
            print(done)
            return
        if dry_run:
            print_options(opts, run_dir)
            print("Dry run; exiting.")
            return
        try:
            launch(opts, run_dir)
        except (RunWriteError, rundir.TrainingDiverged, ConfigError) as err:  # ConfigError: the run directory's lock (in use, read-only)
            if cli_errors.debugging():
                raise
            raise click.ClickException(str(err)) from None


class StartupInterrupted(Exception):
    """SIGINT/SIGTERM before the training loop took over its signals: nothing to snapshot yet."""


class RunComplete(Exception):
    """The run to continue already reached --kimg: nothing to do."""


@contextlib.contextmanager
def stop_on_signal_during_startup():
    """Until the training loop installs its own handlers (finish the step, snapshot), a signal stops at once."""
    def interrupt(signum, _frame):
        raise StartupInterrupted(signal.Signals(signum).name)

    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        previous = {}
    try:
        yield
    except StartupInterrupted as err:
        print(f"Stopped by {err} during start-up; nothing was trained.", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------
# Resolving options.


def resolve_options(kwargs: dict[str, Any]) -> tuple[dnnlib.EasyDict, str]:
    """Validate every option, check what can be checked before writing, and return the options and run dir."""
    method_overrides = pop_method_overrides(kwargs)
    code_compat = kwargs.pop("code_compat")
    resume_mode, cpu_procs, grid = kwargs.pop("resume_mode"), kwargs.pop("cpu_procs"), kwargs.pop("grid")
    if kwargs.get("aug") is None and kwargs.get("method"):  # e.g. DiffAugment alone runs without ADA's pipe
        kwargs["aug"] = method_default_aug(kwargs["method"])
    if kwargs.get("gpus") is None:  # under torchrun the launcher already says how many processes there are
        kwargs["gpus"] = torchrun_world_size() or 1
    o = with_defaults({k: v for k, v in kwargs.items() if v is not None or k in ("metrics",)})
    o.workers = kwargs.get("workers") if kwargs.get("workers") is not None else devices.default_workers()
    o.ada_linear = bool(method_overrides.get("ada_linear"))
    validate_basic(o)
    devices.check_process_count(o.gpus, cpu_procs)  # before any note or warning: the error is the only line

    info = inspect_dataset(o.data, cond=bool(o.cond))
    metrics = parse_metrics(kwargs.get("metrics"), info.size)
    opts, desc = build_training_options(o, info, metrics)
    method = o.method or "ada"
    dataset_size = o.subset if o.subset is not None else info.size
    from training.contrastive.presets import implicit_method_note, resolve_method  # torch import deferred until here

    method_opts = resolve_method(method, method_overrides, dataset_size=dataset_size,
                                 mirror=bool(o.mirror), batch=opts.batch_size, code_compat=code_compat,
                                 warn=lambda msg: print(f"Warning: {msg}", file=sys.stderr))
    note = implicit_method_note(o.method, method_overrides, method_opts)
    if note is not None:
        print(note, file=sys.stderr)
    if method_opts.ada_linear and opts.get("ada_target") is None:
        raise ConfigError("--ada_linear needs --aug=ada (the linear ramp goes to --target)")
    if method_opts.ada_linear and o.get("ada_kimg") is not None:
        raise ConfigError("--ada-kimg sets the adaptive controller's speed; ADA-Linear's ramp ignores it: drop --ada-kimg")
    if method_opts.cond_loss == "2c" and not o.cond:
        raise ConfigError("--method=contragan needs a labelled dataset and --cond=True")
    opts.method_kwargs = method_opts.to_dict()
    if grid is not None:
        opts.image_grid = parse_grid(grid)
    if cpu_procs:
        opts.cpu_procs = True
    preflight.check_outdir(o.outdir)
    run_dir = apply_resume(opts, o, info, resume_mode) if o.resume not in (None, "noresume") else None
    opts.run_dir = run_dir or next_run_dir(o.outdir, desc)
    return opts, opts.run_dir


def parse_metrics(value: Optional[str], dataset_size: int = 0) -> list[str]:
    """--metrics as a list; without the option, upstream's fid50k_full (none on a CPU, with a note)."""
    if value is None:
        note = devices.cpu_metric_default_note(["fid50k_full"], dataset_size)
        if note is not None:
            print(note)
            return []
        value = "fid50k_full"
    value = value.strip()
    if value.lower() in ("", "none"):
        return []
    from metrics import metric_main

    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if not metric_main.is_valid_metric(name):
            raise ConfigError(metric_main.invalid_metric_message(name, option="--metrics"))
    return names


def parse_grid(value: str) -> list[int]:
    parts = value.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--grid={value}: give the grid as WxH images, e.g. --grid=8x8")
    return [int(parts[0]), int(parts[1])]


def inspect_dataset(path: str, cond: bool = False) -> DatasetInfo:
    if not path or not os.path.exists(path):
        raise ConfigError(f"--data={path}: no such directory or zip file; build one with dataset_tool.py")
    from training.dataset import ImageFolderDataset, NoLabels

    try:
        dataset = ImageFolderDataset(path=path, use_labels=False, cache_in_ram=False)
    except (ValueError, OSError) as err:
        raise ConfigError(f"--data={path}: {str(err).splitlines()[0]}") from None
    try:
        label_dim = ImageFolderDataset(path=path, use_labels=True, cache_in_ram=False).label_dim
    except NoLabels:
        label_dim = 0
    except ValueError as err:  # a malformed dataset.json matters only when the labels are used
        if cond:
            raise ConfigError(f"--cond=True: {str(err).splitlines()[0]}") from None
        label_dim = 0
    info = DatasetInfo(name=dataset.name, resolution=dataset.resolution, num_channels=dataset.num_channels,
                       label_dim=label_dim, size=len(dataset))
    dataset.close()
    preflight.check_dataset(path)
    return info


def apply_resume(opts: dnnlib.EasyDict, o: dnnlib.EasyDict, info: DatasetInfo, mode: str) -> Optional[str]:
    """Set resume_pkl / resume_kind from --resume; returns the run directory to continue in, if any."""
    plan = plan_resume(o.resume, mode, o.outdir, opts)
    if plan.continue_dir is not None:
        inherit_transfer_settings(plan.previous_opts, opts)
        if o.get("ada_kimg") is not None:  # a new ADA speed may be given when continuing (acts from the next adjustment)
            opts.ada_kimg = o.ada_kimg
        elif "ada_kimg" in plan.previous_opts:  # otherwise the run keeps the speed it was started with
            opts.ada_kimg = plan.previous_opts["ada_kimg"]
        opts.continued_run = True
        if plan.previous_opts.get("total_kimg") != opts.total_kimg:
            opts.previous_total_kimg = number_from_options(plan.previous_opts.get("total_kimg"), "total_kimg")
    opts.resume_pkl = plan.resume_pkl
    if plan.resume_pkl is None:  # a run killed before its first snapshot: from zero, in its own directory
        opts.pop("resume_pkl")
        return plan.continue_dir
    if "://" in plan.resume_pkl:
        opts.resume_kind = "transfer"
        preflight.fetch_resume_url(o.resume, plan.resume_pkl)  # into the cache the loop then reads from
        return plan.continue_dir
    candidates = [plan.resume_pkl, *plan.older_snapshots]
    opts.resume_pkl, data = preflight.newest_intact_snapshot(candidates, info, cond=bool(o.cond),
                                                             option=f"--resume={o.resume}")
    plan.resume_pkl = opts.resume_pkl
    from training.training_loop import loop_options_key

    state = data.get("resume_state") or {}
    opts.resume_kind = "exact" if state.get("options_key") == loop_options_key(opts) else "weights"
    if plan.continue_dir is None:
        return None
    if opts.resume_kind != "exact":
        raise ConfigError(f"{plan.resume_pkl}: its resume state does not match the run's options; start a new run "
                          f"from its weights with --resume-mode=new")
    done_nimg = int(state["cur_nimg"])
    if done_nimg >= opts.total_kimg * 1000:
        raise RunComplete(f"Nothing to do: {plan.continue_dir} already reached kimg {done_nimg / 1000:g} "
                          f"(--kimg={opts.total_kimg:g}); raise --kimg to train longer.")
    return plan.continue_dir


def print_options(opts: dict, run_dir: str) -> None:
    print()
    print("Training options:")
    print(json.dumps(opts, indent=2))
    print()
    print(f"Output directory:    {run_dir}")
    on_gpus = devices.cuda_count() > 0 and not opts.get("cpu_procs")
    print(f"{'Number of GPUs:' if on_gpus else 'Processes:':<21}{opts['num_gpus']}")
    print(f"Device:              {devices.describe_device(opts['num_gpus'], bool(opts.get('cpu_procs')))}")
    print(f"Batch size:          {opts['batch_size']} images")
    print(f"Training duration:   {opts['total_kimg']} kimg")
    print(f"Dataset path:        {opts['training_set_kwargs']['path']}")
    print(f"Dataset size:        {opts['training_set_kwargs']['max_size']} images")
    print(f"Dataset resolution:  {opts['training_set_kwargs']['resolution']}")
    print(f"Dataset labels:      {opts['training_set_kwargs']['use_labels']}")
    print(f"Dataset x-flips:     {opts['training_set_kwargs']['xflip']}")
    from training.contrastive.presets import MethodOptions, describe_method

    for i, line in enumerate(describe_method(MethodOptions.from_dict(opts["method_kwargs"]), opts["total_kimg"])):
        print(f"{'Method:' if i == 0 else '':<21}{line}")
    for line in resume_lines(opts):
        print(line)
    print()


def resume_lines(opts: dict) -> list[str]:
    lines = []
    if opts.get("continued_run"):
        source = opts.get("resume_pkl")
        lines.append(f"Resume:              continuing this run directory from "
                     f"{os.path.basename(source) if source else 'zero (it has no snapshot yet)'}")
    elif opts.get("resume_pkl"):
        lines.append(f"Resume:              {opts['resume_pkl']} ({opts.get('resume_kind', 'weights')})")
    if opts.get("previous_total_kimg") is not None:
        retimed = [name for name, on in (("ADA-Linear's p ramp", opts["method_kwargs"].get("ada_linear")),
                                         ("the diversity-aware fake queue",
                                          opts["method_kwargs"].get("fqs_schedule") == "linear")) if on]
        what = " and ".join(retimed) + " re-timed to the new total" if retimed else "no schedule depends on it"
        lines.append(f"Duration changed:    {opts['previous_total_kimg']:g} -> {opts['total_kimg']:g} kimg ({what})")
    return lines


# ----------------------------------------------------------------------------
# Launching: in-process, spawned processes, or under torchrun.


def torchrun_world_size() -> Optional[int]:
    """WORLD_SIZE when started by torchrun (or another env:// launcher), else None."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def launch(opts: dnnlib.EasyDict, run_dir: str) -> None:
    if (torchrun_world_size() or 1) > 1:
        launch_torchrun(opts)
        return
    print_options(opts, run_dir)
    lock = create_run_dir(opts, run_dir)
    try:
        if opts.num_gpus == 1:
            subprocess_fn(0, opts, None)
        else:
            spawn_processes(opts)
    finally:
        rundir.release_run_lock(lock)


def create_run_dir(opts: dict, run_dir: str) -> Any:
    """A new run directory, or the continued one (stale temp files of a killed run removed); options written.
    Returns the run directory's lock, held while this process trains in it."""
    try:
        if opts.get("continued_run"):
            lock = rundir.hold_run_lock(run_dir)  # before touching anything: another process may train here
            removed = rundir.remove_stale_temp_files(run_dir)
            cleaned = f" (removed {len(removed)} stale temp files)" if removed else ""
            print(f"Continuing in the output directory{cleaned}...")
        else:
            print("Creating output directory...")
            os.makedirs(run_dir, exist_ok=False)
            lock = rundir.hold_run_lock(run_dir)
        rundir.write_options(run_dir, opts)
    except OSError as err:
        raise RunWriteError(rundir.write_failure_message(err.filename or run_dir, err)) from None
    return lock


RANK_ERROR_EXIT = 3  # a spawned rank that printed a one-line error exits with this code


def spawn_processes(opts: dict) -> None:
    """One process per GPU. A signal to this parent reaches the ranks through a shared value that each polls,
    so every rank finishes its step, snapshots and exits. The ranks start with SIGINT/SIGTERM blocked (the
    mask is inherited) until their loop handles them, so no signal kills a rank half-started."""
    import torch

    from training.training_loop import shared_stop_value

    print(f"Launching {opts['num_gpus']} processes...")
    stop_value = shared_stop_value(torch.multiprocessing.get_context("spawn"))

    def request_stop(signum, _frame):
        if stop_value.value == 0:
            print(f"\nReceived {signal.Signals(signum).name}: asking every process to snapshot and exit...", flush=True)
        stop_value.value = signum

    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    try:
        with tempfile.TemporaryDirectory() as temp_dir:
            init_file = os.path.join(temp_dir, ".torch_distributed_init")
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
            try:
                processes = torch.multiprocessing.start_processes(
                    subprocess_fn, args=(opts, init_file, None, stop_value), nprocs=opts["num_gpus"], join=False,
                    start_method="spawn")
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal that came meanwhile is handled now
            try:
                while not processes.join():
                    pass
            except torch.multiprocessing.ProcessExitedException as err:
                if err.exit_code != RANK_ERROR_EXIT:
                    raise
                raise click.exceptions.Exit(1) from None  # the rank printed its one-line error
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_torchrun(opts: dnnlib.EasyDict) -> None:
    """Under torchrun (one node or several) every rank parses the options; global rank 0's are
    authoritative: it creates the run directory, and every rank trains with its options."""
    from training import distributed
    from training.training_loop import default_device

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world_size != opts.num_gpus:
        raise click.ClickException(f"--gpus={opts.num_gpus}: differs from torchrun's WORLD_SIZE={world_size}; "
                                   f"leave --gpus out under torchrun")
    device = default_device(int(os.environ.get("LOCAL_RANK", rank)), cpu_only=bool(opts.get("cpu_procs")))
    distributed.init_process_group(rank, world_size, None, device)
    opts = agree_on_options(opts, rank, device)
    lock = None
    if rank == 0:
        print_options(opts, opts.run_dir)
        lock = create_run_dir(opts, opts.run_dir)
    distributed.barrier()  # the run directory exists before any rank opens its log
    try:
        subprocess_fn(rank, opts, None, device=device)
    finally:
        if lock is not None:
            rundir.release_run_lock(lock)


def agree_on_options(opts: dnnlib.EasyDict, rank: int, device: Any) -> dnnlib.EasyDict:
    """Rank 0's options for every rank; all ranks stop if a node resolved different ones (a
    different dataset, or an --outdir that is not shared, so --resume=latest finds another run)."""
    import torch

    from training import distributed

    shared = [dict(opts)]
    torch.distributed.broadcast_object_list(shared, src=0)
    ours = {key: value for key, value in opts.items() if key != "run_dir"}
    theirs = {key: value for key, value in shared[0].items() if key != "run_dir"}
    differing = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
    if distributed.any_rank(bool(differing), device):
        detail = f"rank {rank} differs from rank 0 in {', '.join(differing)}" if differing else "another rank differs"
        raise click.ClickException(f"torchrun: the ranks resolved different training options ({detail}); "
                                   f"give every node the same command line and a shared filesystem for --outdir and --data")
    return dnnlib.EasyDict(shared[0])


def subprocess_fn(rank: int, opts: dict, init_file: Optional[str], device: Any = None, stop_value: Any = None) -> None:
    import torch

    from training import distributed
    from training.training_loop import StopRequest, default_device, training_loop

    stop = StopRequest(shared=stop_value, announce=rank == 0)
    stop.install()  # from here on a signal means: finish the step, snapshot, exit
    logger = dnnlib.util.Logger(file_name=os.path.join(opts["run_dir"], "log.txt"), file_mode="a", should_flush=True)
    try:
        if device is None:  # not yet in a process group (single process or spawned rank)
            device = default_device(rank, cpu_only=bool(opts.get("cpu_procs")))
            distributed.init_process_group(rank, opts["num_gpus"], init_file, device)
        if device.type == "cpu" and opts["num_gpus"] > 1:  # share the cores instead of oversubscribing them
            torch.set_num_threads(devices.cpu_threads_per_process(opts["num_gpus"]))
        if rank != 0:
            logger.close()
            logger = None
        training_loop(opts, rank=rank, device=device, stop=stop)
    except (RunWriteError, rundir.TrainingDiverged) as err:
        if init_file is None:  # in the launching process: main() prints it
            raise
        print(f"Error: {err}", file=sys.stderr, flush=True)  # a spawned rank: one line, then a quiet exit
        sys.exit(RANK_ERROR_EXIT)
    finally:
        stop.uninstall()
        if logger is not None:
            logger.close()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

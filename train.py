"""Train a GAN: StyleGAN2-ADA with FakeCLR, InsGen, ADA-Linear or ContraGAN 2C.

Same command line as NVlabs stylegan2-ada-pytorch, plus the FakeCLR / InsGen flags and --method.
Examples:
    python train.py --outdir=runs --data=datasets/emoji-smileys --cfg=tiny --kimg=2 --metrics=none
    python train.py --outdir=runs --data=ffhq2k.zip --method=fakeclr --cfg=paper256 --mirror=True --batch=64 --gpus=1
See docs/training.md for every option.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import click

import dnnlib
from dnnlib import cli_errors
from training import ada_options, defaults, devices, preflight
from training import run_dir as rundir
from training.config import (AUGPIPE_NAMES, CFG_NAMES, ConfigError, DatasetInfo, build_training_options,
                             next_run_dir, validate_basic, with_defaults)
from training.resume_plan import RESUME_MODES, RunComplete, apply_resume
from training.launch import RanksFailed, launch
from training.checkpoint import Resume
from training.method_cli import MethodName, method_options, pop_method_overrides
from training.method_registry import method_default_aug, method_names
from training.run_dir import RunWriteError
from training.start_block import print_options
from training.stop_request import stop_on_signal_during_startup

def _default(option: str) -> str:
    """An option's default as its help text shows it (training/defaults.py CLI_DEFAULTS)."""
    value = defaults.CLI_DEFAULTS[option]
    return str(value).lower() if isinstance(value, bool) else str(value)


@click.command(context_settings=dict(max_content_width=120))
@click.pass_context
# General options.
@click.option("--outdir", help="Where to save the results", required=True, metavar="DIR", callback=cli_errors.expand_user)
@click.option("--gpus", help=f"Number of GPUs [default: {_default('gpus')}; WORLD_SIZE under torchrun]", type=int, default=None, metavar="INT")
@click.option("--cpu-procs", "--cpu_procs", "cpu_procs", help=f"Run --gpus=N processes on the CPU (no GPUs needed) [default: {_default('cpu_procs')}]",
              type=bool, metavar="BOOL")
@click.option("--snap", help=f"Snapshot interval in ticks [default: {_default('snap')}]", type=int, metavar="INT")
@click.option("--metrics", help='Comma-separated metrics or "none" [default: fid50k_full; none on a CPU]', type=str, default=None)
@click.option("--grid", help="Images in the fakes/reals grids, WxH [default: upstream's layout, at most 8x8]", metavar="WxH")
@click.option("--seed", help=f"Random seed [default: {_default('seed')}]", type=int, metavar="INT")
@click.option("-n", "--dry-run", help="Print training options and exit", is_flag=True)
# Dataset.
@click.option("--data", help="Training data (directory or zip)", metavar="PATH", required=True, callback=cli_errors.expand_user)
@click.option("--cond", help=f"Train conditional model based on dataset labels [default: {_default('cond')}]", type=bool, metavar="BOOL")
@click.option("--subset", help="Train with only N images [default: all]", type=int, metavar="INT")
@click.option("--mirror", help=f"Enable dataset x-flips [default: {_default('mirror')}]", type=bool, metavar="BOOL")
# Base config.
@click.option("--cfg", help=f"Base config [default: {_default('cfg')}]", type=click.Choice(CFG_NAMES))
@click.option("--gamma", help="Override R1 gamma", type=float)
@click.option("--kimg", help="Override training duration (fractions allowed)", type=float, metavar="KIMG")
@click.option("--stop-kimg", "--stop_kimg", "stop_kimg", type=float, metavar="KIMG",
              help="Stop at this kimg of the --kimg schedule, with a snapshot; continue it later with --resume [default: --kimg]")
@click.option("--tick", help=f"Progress tick interval in kimg [default: {defaults.KIMG_PER_TICK}]", type=float, metavar="KIMG")
@click.option("--batch", help="Override batch size", type=int, metavar="INT")
# Discriminator augmentation.
@click.option("--aug", help="Augmentation mode [default: ada]", type=click.Choice(["noaug", "ada", "fixed"]))
@click.option("--p", help="Augmentation probability for --aug=fixed", type=float)
@click.option("--target", help=f"ADA target value for --aug=ada [default: {defaults.ADA_TARGET}]", type=float)
@click.option("--ada-kimg", "--ada_kimg", "ada_kimg", type=float, metavar="KIMG",
              help=f"ADA speed: kimg for p to move by 1 [default: {defaults.ADA_KIMG}; {defaults.TRANSFER_ADA_KIMG} from a "
                   f"published network]")
@click.option("--augpipe", help=f"Augmentation pipeline [default: {defaults.AUGPIPE}]", type=click.Choice(AUGPIPE_NAMES))
# Transfer learning and resume.
@click.option("--resume", help="Resume from a preset name, pickle, URL, run directory or 'latest' [default: noresume]", metavar="PKL",
              callback=cli_errors.expand_user)
@click.option("--resume-mode", "--resume_mode", "resume_mode", type=click.Choice(RESUME_MODES),
              help=f"For a run directory or 'latest': continue in that directory, or start a new one [default: {_default('resume_mode')}]")
@click.option("--freezed", help="Freeze-D: number of D layers to freeze [default: 0]", type=int, metavar="INT")
# Performance options.
@click.option("--fp32", help="Disable mixed-precision training", type=bool, metavar="BOOL")
@click.option("--nhwc", help="Use NHWC memory format with FP16", type=bool, metavar="BOOL")
@click.option("--nobench", help="Disable cuDNN benchmarking", type=bool, metavar="BOOL")
@click.option("--allow-tf32", "allow_tf32", help="Allow PyTorch to use TF32 internally", type=bool, metavar="BOOL")
@click.option("--workers", help=f"Override number of DataLoader workers [default: {defaults.UPSTREAM_WORKERS}, at most the cores - 1]", type=int, metavar="INT")
@click.option("--bf16", help="bfloat16 autocast for G/D in Gmain and Dmain [default: false]", type=bool, metavar="BOOL")
@click.option("--channels-last", "--channels_last", "channels_last", help="NHWC memory format in every G/D block [default: false]",
              type=bool, metavar="BOOL")
@click.option("--compile", "compile", help="torch.compile G and D for Gmain and Dmain; eager if it fails [default: false]",
              type=bool, metavar="BOOL")
@click.option("--compile-backend", "--compile_backend", "compile_backend", help=f"torch.compile backend [default: {defaults.COMPILE_BACKEND}]",
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
            opts, run_dir, resume = resolve_options_and_resume(kwargs)
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
            launch(opts, run_dir, resume)
        except (RunWriteError, rundir.TrainingDiverged, ConfigError) as err:  # ConfigError: the lock, torchrun's ranks
            if cli_errors.debugging():
                raise
            raise click.ClickException(str(err)) from None
        except RanksFailed:
            raise click.exceptions.Exit(1) from None  # the rank printed its one-line error


# ----------------------------------------------------------------------------
# Resolving options.


def resolve_options(kwargs: dict[str, Any]) -> tuple[dnnlib.EasyDict, str]:
    """Validate every option, check what can be checked before writing, and return the options and run dir."""
    opts, run_dir, _ = resolve_options_and_resume(kwargs)
    return opts, run_dir


def resolve_options_and_resume(kwargs: dict[str, Any]) -> tuple[dnnlib.EasyDict, str, Optional[Resume]]:
    """resolve_options, plus the resume pickle as read (once) while checking it, for the loop."""
    method_overrides = pop_method_overrides(kwargs)
    code_compat = kwargs.pop("code_compat")
    grid = kwargs.pop("grid")
    if kwargs.get("aug") is None and kwargs.get("method"):  # e.g. DiffAugment alone runs without ADA's pipe
        kwargs["aug"] = method_default_aug(kwargs["method"])
    if kwargs.get("gpus") is None:  # under torchrun the launcher already says how many processes there are
        kwargs["gpus"] = devices.torchrun_world_size()
    cli = with_defaults(kwargs)  # the command line, with its defaults
    resume_mode, cpu_procs = cli.pop("resume_mode"), cli.pop("cpu_procs")
    if cli.get("workers") is None:
        cli.workers = devices.default_workers()
    cli.ada_linear = bool(method_overrides.get("ada_linear"))
    validate_basic(cli)
    devices.check_process_count(cli.gpus, cpu_procs)  # before any note or warning: the error is the only line

    info = inspect_dataset(cli.data, cond=bool(cli.cond))
    metrics = parse_metrics(kwargs.get("metrics"), info.size)
    opts, desc = build_training_options(cli, info, metrics)
    method = cli.method or "ada"
    dataset_size = cli.subset if cli.subset is not None else info.size
    from training.contrastive.presets import implicit_method_note, resolve_method  # torch import deferred until here

    method_opts = resolve_method(method, method_overrides, dataset_size=dataset_size,
                                 mirror=bool(cli.mirror), batch=opts.batch_size, code_compat=code_compat,
                                 warn=lambda msg: print(f"Warning: {msg}", file=sys.stderr))
    note = implicit_method_note(cli.method, method_overrides, method_opts)
    if note is not None:
        print(note, file=sys.stderr)
    ada_options.check_ada_linear(method_opts.ada_linear, cli.aug or "ada", cli.get("ada_kimg"))
    if method_opts.cond_loss == "2c" and not cli.cond:
        raise ConfigError("--method=contragan needs a labelled dataset and --cond=True")
    opts.method_kwargs = method_opts.to_dict()
    if grid is not None:
        opts.image_grid = parse_grid(grid)
    if cpu_procs:
        opts.cpu_procs = True
    preflight.check_outdir(cli.outdir)
    run_dir, resume = apply_resume(opts, cli, info, resume_mode) if cli.resume not in (None, "noresume") else (None, None)
    opts.run_dir = run_dir or next_run_dir(cli.outdir, desc)
    return opts, opts.run_dir, resume


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


if __name__ == "__main__":
    main()

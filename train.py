"""Train a GAN: StyleGAN2-ADA with FakeCLR, InsGen, ADA-Linear or ContraGAN 2C.

Same command line as NVlabs stylegan2-ada-pytorch, plus the FakeCLR / InsGen flags and --method.
Examples:
    python train.py --outdir=runs --data=datasets/emoji-smileys --cfg=tiny --kimg=2 --metrics=none
    python train.py --outdir=runs --data=ffhq2k.zip --method=fakeclr --cfg=paper256 --mirror=True --batch=64 --gpus=1
See docs/training.md for every option.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sys
import tempfile
from typing import Any, Optional

import click

import dnnlib
from dnnlib.util import atomic_write
from training.config import (AUGPIPE_NAMES, CFG_NAMES, ConfigError, DatasetInfo, RESUME_SPECS, build_training_options,
                             next_run_dir, validate_basic, with_defaults)

# Method hyper-parameters: every MethodOptions field becomes an option (`--tau_m` and `--tau-m` alike);
# the preset-level ones (--method, --ada_linear, --fqs/--rqs, --fakeclr-code-compat) are declared below.
_EXPLICIT_METHOD_FIELDS = {"method", "code_compat", "ada_linear", "fqs", "rqs"}


class _OptionalNumber(click.ParamType):
    """A number, or 'none' for None (e.g. --noise_clamp=none: paper-literal, no clamp)."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = kind.__name__

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "none":
            return "none"
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a valid {self.name} (or 'none')", param, ctx)


def _method_field_options() -> list[tuple[list[str], str, Any, str]]:
    from training.contrastive.presets import MethodOptions  # noqa: WPS433 (cheap: no torch work at import)

    options = []
    for field in dataclasses.fields(MethodOptions):
        if field.name in _EXPLICIT_METHOD_FIELDS:
            continue
        default = field.default
        if isinstance(default, bool):
            kind = bool
        elif isinstance(default, str):
            kind = str
        else:  # numbers and Optional numbers accept 'none' too
            is_float = isinstance(default, float) or "clamp" in field.name or "scale" in field.name
            kind = _OptionalNumber(float if is_float else int)
        names = [f"--{field.name}"]
        if "_" in field.name:
            names.append(f"--{field.name.replace('_', '-')}")
        options.append((names, field.name, kind, f"Method option (see docs/methods.md) [default: {default}, or the --method preset's]"))
    return options


def _method_options(func):
    for names, field, kind, help_text in reversed(_method_field_options()):
        func = click.option(*names, field, type=kind, default=None, help=help_text)(func)
    return func


@click.command(context_settings=dict(max_content_width=120))
@click.pass_context
# General options.
@click.option("--outdir", help="Where to save the results", required=True, metavar="DIR")
@click.option("--gpus", help="Number of GPUs (processes on a CPU-only machine) [default: 1; WORLD_SIZE under torchrun]",
              type=int, default=None, metavar="INT")
@click.option("--snap", help="Snapshot interval in ticks [default: 50]", type=int, default=50, metavar="INT")
@click.option("--metrics", help='Comma-separated metrics or "none" [default: fid50k_full]', type=str, default=None)
@click.option("--seed", help="Random seed [default: 0]", type=int, default=0, metavar="INT")
@click.option("-n", "--dry-run", help="Print training options and exit", is_flag=True)
# Dataset.
@click.option("--data", help="Training data (directory or zip)", metavar="PATH", required=True)
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
@click.option("--augpipe", help="Augmentation pipeline [default: bgc]", type=click.Choice(AUGPIPE_NAMES))
# Transfer learning and resume.
@click.option("--resume", help="Resume from a preset name, pickle, URL, run directory or 'latest' [default: noresume]", metavar="PKL")
@click.option("--freezed", help="Freeze-D: number of D layers to freeze [default: 0]", type=int, metavar="INT")
# Performance options.
@click.option("--fp32", help="Disable mixed-precision training", type=bool, metavar="BOOL")
@click.option("--nhwc", help="Use NHWC memory format with FP16", type=bool, metavar="BOOL")
@click.option("--nobench", help="Disable cuDNN benchmarking", type=bool, metavar="BOOL")
@click.option("--allow-tf32", "allow_tf32", help="Allow PyTorch to use TF32 internally", type=bool, metavar="BOOL")
@click.option("--workers", help="Override number of DataLoader workers [default: 3]", type=int, metavar="INT")
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
@click.option("--method", help="Training method preset [default: ada]",
              type=click.Choice(["ada", "adalinear", "insgen", "fakeclr", "contragan"]))
@click.option("--ada_linear", "--ada-linear", "ada_linear", help="Linear p ramp to --target over --kimg (ADA-Linear)", type=bool)
@click.option("--no_insgen", "--no-insgen", "no_insgen", help="Disable InsGen's contrastive heads", type=bool)
@click.option("--no_fakeclr", "--no-fakeclr", "no_fakeclr", help="Disable FakeCLR's contrastive head", type=bool)
@click.option("--no_cl_on_g", "--no-cl-on-g", "no_cl_on_g", help="Drop the contrastive term from G's loss", type=bool)
@click.option("--rqs", help="Real queue length (InsGen) [default: 5% of the data, x2 with --mirror]", type=int, metavar="INT")
@click.option("--fqs", help="Fake queue length [default: 5% of the data, x2 with --mirror]", type=int, metavar="INT")
@click.option("--forgetting", help="FakeCLR forgetting factor: paper (eq. 11), code (constant +1), off "
              "[default: the preset's, paper for fakeclr]", type=click.Choice(["paper", "code", "off"]))
@click.option("--fakeclr-code-compat", "code_compat", help="Reproduce the released FakeCLR code where it differs from the paper", is_flag=True)
@_method_options
def main(ctx: click.Context, **kwargs: Any) -> None:
    """Train a GAN (StyleGAN2-ADA backbone) with the method of your choice."""
    dry_run = kwargs.pop("dry_run")
    try:
        opts, run_dir_or_desc = resolve_options(kwargs)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err).splitlines()[0]) from None

    if dry_run:
        print_options(opts, run_dir_or_desc)
        print("Dry run; exiting.")
        return
    run_dir = run_dir_or_desc
    launch(opts, run_dir)


# ----------------------------------------------------------------------------
# Resolving options.


def resolve_options(kwargs: dict[str, Any]) -> tuple[dnnlib.EasyDict, str]:
    """Validate every option and build training_options.json content plus the run directory path."""
    method_overrides = {field: kwargs.pop(field) for _, field, _, _ in _method_field_options()}
    for field, value in list(method_overrides.items()):
        if value == "none" and field != "noise_clamp":  # 'none' = the option's automatic default
            method_overrides[field] = None
    for flag in ("ada_linear", "no_insgen", "no_fakeclr", "no_cl_on_g", "rqs", "fqs", "forgetting"):
        method_overrides[flag] = kwargs.pop(flag)
    code_compat = kwargs.pop("code_compat")
    if kwargs.get("gpus") is None:  # under torchrun the launcher already says how many processes there are
        kwargs["gpus"] = torchrun_world_size() or 1
    o = with_defaults({k: v for k, v in kwargs.items() if v is not None or k in ("metrics",)})
    o.workers = kwargs.get("workers") if kwargs.get("workers") is not None else 3
    o.ada_linear = bool(method_overrides.get("ada_linear"))
    validate_basic(o)

    metrics = parse_metrics(kwargs.get("metrics"))
    info = inspect_dataset(o.data, cond=bool(o.cond))
    opts, desc = build_training_options(o, info, metrics)
    if o.resume is not None and o.resume != "noresume":
        # 'latest' looks for runs made with the same options, whether or not they were resumes themselves.
        same_run_descs = [build_training_options(dnnlib.EasyDict(o, resume=r), info, metrics)[1] for r in (None, "latest")]
        opts.resume_pkl = resolve_resume(o.resume, o.outdir, same_run_descs)

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
    if method_opts.cond_loss == "2c" and not o.cond:
        raise ConfigError("--method=contragan needs a labelled dataset and --cond=True")
    opts.method_kwargs = method_opts.to_dict()
    run_dir = next_run_dir(o.outdir, desc)
    opts.run_dir = run_dir
    return opts, run_dir


def parse_metrics(value: Optional[str]) -> list[str]:
    if value is None:
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
    return info


def resolve_resume(resume: str, outdir: str, descs: list[str]) -> str:
    """Map a preset, run directory or 'latest' to the pickle that --resume should read."""
    if resume in RESUME_SPECS:
        return RESUME_SPECS[resume]
    if resume == "latest":
        runs = sorted({run for desc in descs for run in glob.glob(os.path.join(outdir, f"[0-9]*-{desc}"))}, key=_run_number)
        for run in reversed(runs):
            snapshot = newest_snapshot(run)
            if snapshot is not None:
                return snapshot
        raise ConfigError(f"--resume=latest: no run '*-{descs[0]}' with a snapshot in {outdir}; start one without --resume")
    if os.path.isdir(resume):
        snapshot = newest_snapshot(resume)
        if snapshot is None:
            raise ConfigError(f"--resume={resume}: the directory holds no network-snapshot-*.pkl")
        return snapshot
    if os.path.isfile(resume):  # refuse a file that is no pickle at all before a run directory exists
        with open(resume, "rb") as f:
            magic = f.read(4)
        if not (magic.startswith(b"\x80") or magic == b"PK\x03\x04"):  # pickle protocol >= 2, or a torch.save zip
            raise ConfigError(f"--resume={resume}: not a network pickle (neither a pickle nor a torch.save archive)")
    elif "://" not in resume:
        raise ConfigError(f"--resume={resume}: no such pickle or run directory")
    return resume


def newest_snapshot(run_dir: str) -> Optional[str]:
    snapshots = sorted(glob.glob(os.path.join(run_dir, "network-snapshot-*.pkl")))
    return snapshots[-1] if snapshots else None


def _run_number(path: str) -> int:
    match = re.match(r"^\d+", os.path.basename(path))
    return int(match.group()) if match else -1


def print_options(opts: dict, run_dir: str) -> None:
    print()
    print("Training options:")
    print(json.dumps(opts, indent=2))
    print()
    print(f"Output directory:    {run_dir}")
    print(f"Number of GPUs:      {opts['num_gpus']}")
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
    print()


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
    create_run_dir(opts, run_dir)
    if opts.num_gpus == 1:
        subprocess_fn(0, opts, None)
        return
    spawn_processes(opts)


def create_run_dir(opts: dict, run_dir: str) -> None:
    print("Creating output directory...")
    os.makedirs(run_dir, exist_ok=False)
    with atomic_write(os.path.join(run_dir, "training_options.json"), "w") as f:
        json.dump(opts, f, indent=2)


def spawn_processes(opts: dict) -> None:
    """One process per GPU; SIGTERM to this parent is forwarded so every rank snapshots and exits."""
    import signal

    import torch

    print(f"Launching {opts['num_gpus']} processes...")
    with tempfile.TemporaryDirectory() as temp_dir:
        init_file = os.path.join(temp_dir, ".torch_distributed_init")
        context = torch.multiprocessing.start_processes(subprocess_fn, args=(opts, init_file), nprocs=opts["num_gpus"],
                                                        join=False, start_method="spawn")

        def forward(signum, _frame):
            for process in context.processes:
                if process.is_alive():
                    os.kill(process.pid, signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not context.join():
                pass
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
    device = default_device(int(os.environ.get("LOCAL_RANK", rank)))
    distributed.init_process_group(rank, world_size, None, device)
    opts = agree_on_options(opts, rank, device)
    if rank == 0:
        print_options(opts, opts.run_dir)
        create_run_dir(opts, opts.run_dir)
    distributed.barrier()  # the run directory exists before any rank opens its log
    subprocess_fn(rank, opts, None, device=device)


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


def subprocess_fn(rank: int, opts: dict, init_file: Optional[str], device: Any = None) -> None:
    import torch

    from training import distributed
    from training.training_loop import default_device, training_loop

    logger = dnnlib.util.Logger(file_name=os.path.join(opts["run_dir"], "log.txt"), file_mode="a", should_flush=True)
    try:
        if device is None:  # not yet in a process group (single process or spawned rank)
            device = default_device(rank)
            distributed.init_process_group(rank, opts["num_gpus"], init_file, device)
        if device.type == "cpu" and opts["num_gpus"] > 1:  # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // opts["num_gpus"]))
        if rank != 0:
            logger.close()
            logger = None
        training_loop(opts, rank=rank, device=device)
    finally:
        if logger is not None:
            logger.close()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

"""Evaluate quality metrics for a network pickle, as upstream's calc_metrics.py does.

Examples:
  python calc_metrics.py --metrics=fid50k_full,kid50k_full --network=run/network-snapshot-000400.pkl
  python calc_metrics.py --metrics=fid5k_full --data=datasets/emoji-smileys --mirror=1 --network=net.pkl

Dataset options come from --data/--mirror, else from the pickle's training_set_kwargs, which are used only when
they name our dataset class with known, in-range options (training/dataset_options.py; otherwise --data is
required). Each result is printed as one JSON line and, for a local pickle, appended to metric-<name>.jsonl
beside it.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

import click
import torch

from dnnlib import cli_errors, util
from metrics import metric_main
from training import finite_checks


def dataset_kwargs_for(data: str | None, mirror: bool | None, network_data: dict, network_pkl: str = "--network") -> dict:
    """--data/--mirror override the dataset options stored in the snapshot (used only when they check out)."""
    from training.dataset_options import DEFAULT_DATASET_CLASS, DatasetOptionsError, dataset_kwargs_from_file

    if data is not None:
        if not os.path.exists(data):
            raise cli_errors.OneLineError(f"--data={data}: no such dataset folder or zip; give one made by "
                                          f"dataset_tool.py", exit_code=2)
        kwargs = dict(class_name=DEFAULT_DATASET_CLASS, path=data)
        if mirror is None:  # the network's own x-flip setting, as without --data (a bool only, nothing else read)
            mirror = trained_with_mirror(network_data)
    elif network_data.get("training_set_kwargs") is not None:
        try:
            kwargs = dataset_kwargs_from_file(network_data["training_set_kwargs"], network_pkl)
        except DatasetOptionsError as error:
            raise cli_errors.OneLineError(f"{error}; give the real images with --data", exit_code=2) from None
        if not os.path.exists(kwargs["path"]):
            raise cli_errors.OneLineError(f"{network_pkl}: the dataset it was trained on, {kwargs['path']}, is not "
                                          f"here; give the real images with --data", exit_code=2)
    else:
        raise cli_errors.OneLineError("--network: the pickle holds no dataset options; give the real images with "
                                      "--data", exit_code=2)
    if mirror is not None:
        kwargs["xflip"] = bool(mirror)
    return kwargs


def trained_with_mirror(network_data: dict) -> bool:
    """training_set_kwargs.xflip of the pickle when it is a real bool; anything else counts as no mirroring."""
    stored = network_data.get("training_set_kwargs")
    xflip = stored.get("xflip") if isinstance(stored, dict) else None
    return xflip if isinstance(xflip, bool) else False


def check_dataset_matches(dataset_kwargs: dict, G: Any) -> None:
    from metrics.features import open_dataset

    dataset = open_dataset(dataset_kwargs)
    if dataset.resolution != G.img_resolution:
        raise cli_errors.OneLineError(f"{dataset_kwargs.get('path')}: the dataset is {dataset.resolution} px but "
                                      f"the network makes {G.img_resolution} px images; pass matching images with "
                                      f"--data", exit_code=2)
    if G.c_dim != 0 and dataset.label_dim != G.c_dim:
        raise cli_errors.OneLineError(f"{dataset_kwargs.get('path')}: the network is conditional ({G.c_dim} "
                                      f"classes) but the dataset has {dataset.label_dim} label dims; use a labelled "
                                      f"dataset (dataset.json) with --data", exit_code=2)


def run_metrics(rank: int, args: util.EasyDict, temp_dir: str) -> None:
    """One process per GPU (or a single CPU/GPU process); rank 0 reports."""
    device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    if args.num_gpus > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        init = f"file://{os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))}"
        torch.distributed.init_process_group(backend, init_method=init, rank=rank, world_size=args.num_gpus)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    G = copy.deepcopy(args.G).eval().requires_grad_(False).to(device)
    if rank == 0 and args.verbose:
        print(f"Calculating {', '.join(args.metrics)}...")
    results = metric_main.calc_metrics(args.metrics, G, args.dataset_kwargs, num_gpus=args.num_gpus, rank=rank,
                                       device=device, batch_size=args.batch, progress=args.verbose,
                                       inception=args.inception, vgg16=args.vgg16)
    for result in results:  # one feature pass for FID/KID/PR metrics that share a detector and counts
        if rank == 0:
            metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
    if args.num_gpus > 1:
        torch.distributed.destroy_process_group()


def _parse_metrics(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or names == ["none"]:
        raise click.BadParameter("give at least one metric, e.g. --metrics=fid50k_full")
    for name in names:
        if not metric_main.is_valid_metric(name):
            raise click.BadParameter(metric_main.invalid_metric_message(name).removeprefix("--metrics: "))
    return names


@click.command()
@click.option("--network", "network_pkl", help="Network pickle filename or URL", metavar="PATH", required=True,
              callback=cli_errors.expand_user)
@click.option("--metrics", callback=_parse_metrics, default="fid50k_full", show_default=True,
              help="Comma-separated list of metrics (few-shot counts such as fid5k_full work too)")
@click.option("--data", type=str, metavar="PATH", help="Dataset to evaluate against  [default: from the pickle]",
              callback=cli_errors.expand_user)
@click.option("--mirror", type=bool, metavar="BOOL",
              help="Include x-flips of the dataset  [default: as the network was trained, from the pickle]")
@click.option("--gpus", "num_gpus", type=click.IntRange(min=1), default=1, show_default=True, help="Number of GPUs")
@click.option("--verbose", type=bool, default=True, show_default=True, metavar="BOOL", help="Print progress")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="Detector batch size")
@click.option("--inception", type=str, metavar="PATH|URL", help="Inception weights (e.g. inception-2015-12-05.pkl)")
@click.option("--vgg16", type=str, metavar="PATH|URL", help="VGG16 weights (e.g. upstream vgg16.pkl)")
def main(network_pkl: str, metrics: list[str], data: str | None, mirror: bool | None, num_gpus: int, verbose: bool,
         batch: int, inception: str | None, vgg16: str | None) -> None:
    """Calculate quality metrics for a previous training run or a pretrained network pickle."""
    from training.network_pickle import NetworkPickleError, load_network_pkl

    if num_gpus > 1 and torch.cuda.is_available() and num_gpus > torch.cuda.device_count():
        raise click.BadParameter(f"{num_gpus} requested, {torch.cuda.device_count()} visible", param_hint="--gpus")
    if verbose:
        print(f'Loading network from "{network_pkl}"...')
    with cli_errors.one_line_errors(FileNotFoundError, prefix="--network=", exit_code=2), \
            cli_errors.one_line_errors(NetworkPickleError):
        network_data = load_network_pkl(network_pkl)
    if "G_ema" not in network_data:
        raise cli_errors.OneLineError(f"{network_pkl}: the pickle holds no G_ema (generator) to evaluate; give a "
                                      f"network-snapshot-*.pkl written by train.py or upstream")
    with cli_errors.one_line_errors(finite_checks.NonFiniteError):
        finite_checks.require_finite_generator(network_data["G_ema"], network_pkl)
    args = util.EasyDict(metrics=metrics, num_gpus=num_gpus, verbose=verbose, batch=batch, inception=inception,
                         vgg16=vgg16, network_pkl=network_pkl, G=network_data["G_ema"])
    args.dataset_kwargs = dataset_kwargs_for(data, mirror, network_data, network_pkl)
    with cli_errors.one_line_errors(ValueError, OSError, fix="rebuild the dataset with dataset_tool.py"):
        check_dataset_matches(args.dataset_kwargs, args.G)
    args.run_dir = os.path.dirname(os.path.abspath(network_pkl)) if os.path.isfile(network_pkl) else None
    # Detector weights, a corrupt image found mid-way, a full disk at the stats cache or the result file.
    with cli_errors.one_line_errors(ValueError, OSError), tempfile.TemporaryDirectory() as temp_dir:
        if num_gpus == 1:
            run_metrics(0, args, temp_dir)
        else:
            torch.multiprocessing.spawn(fn=run_metrics, args=(args, temp_dir), nprocs=num_gpus)


if __name__ == "__main__":
    main()

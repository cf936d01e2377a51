"""The start block: the options, output directory, device, dataset, method and resume lines printed before training."""

from __future__ import annotations

import json
import os

from training import devices


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
    stop = f" (this process stops at {opts['stop_kimg']:g}: --stop-kimg)" if opts.get("stop_kimg") is not None else ""
    print(f"Training duration:   {opts['total_kimg']} kimg{stop}")
    print(f"Dataset path:        {opts['training_set_kwargs']['path']}")
    print(f"Dataset size:        {opts['training_set_kwargs']['max_size']} images")
    print(f"Dataset resolution:  {opts['training_set_kwargs']['resolution']}")
    print(f"Dataset labels:      {opts['training_set_kwargs']['use_labels']}")
    print(f"Dataset x-flips:     {opts['training_set_kwargs']['xflip']}")
    from training.contrastive.presets import MethodOptions, describe_method  # torch import deferred until here

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

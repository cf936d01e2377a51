"""What runs where: the processes --gpus asks for, the device line of the start block, loader workers, and
the CPU default for --metrics."""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from training.config import ConfigError
from training.defaults import UPSTREAM_WORKERS

CPU_SECONDS_PER_METRIC_IMAGE = 0.1  # Inception-v3 on one CPU thread, about (docs/performance.md)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Upstream's 3 DataLoader workers, capped so that the loader never warns of oversubscription."""
    return max(1, min(UPSTREAM_WORKERS, usable_cores() - 1))


def torchrun_world_size() -> Optional[int]:
    """WORLD_SIZE when started by torchrun (or another env:// launcher), else None."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def under_torchrun() -> bool:
    return torchrun_world_size() is not None


def default_device(rank: int, cpu_only: bool = False) -> Any:
    """This rank's torch.device: its GPU (round-robin over the visible ones), else the CPU."""
    import torch

    if torch.cuda.is_available() and not cpu_only:
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_process_count(gpus: int, cpu_procs: bool) -> None:
    """--gpus=N>1 needs N GPUs, unless CPU processes are asked for (or torchrun started the processes)."""
    if gpus <= 1 or cpu_procs or under_torchrun():
        return
    available = cuda_count()
    if available < gpus:
        raise ConfigError(f"--gpus={gpus}: this machine has {available} GPU(s); use --gpus={max(available, 1)}, or "
                          f"--cpu-procs=True to run {gpus} CPU processes")


def describe_device(num_gpus: int, cpu_procs: bool) -> str:
    """`cuda:0 NVIDIA H200` (x N), or `CPU, 2 threads` (per process when there are several)."""
    if cuda_count() > 0 and not cpu_procs:
        import torch

        name = torch.cuda.get_device_name(0)
        return f"cuda:0 {name}" if num_gpus == 1 else f"{num_gpus} x cuda ({name})"
    threads = cpu_threads_per_process(num_gpus)
    if num_gpus == 1:
        return f"CPU, {threads} thread{'s' if threads != 1 else ''}"
    return f"CPU, {num_gpus} processes x {threads} thread{'s' if threads != 1 else ''}"


def cpu_threads_per_process(num_processes: int) -> int:
    import torch

    if num_processes == 1:
        return torch.get_num_threads()
    return max(1, usable_cores() // num_processes)  # what the spawned ranks set


def cpu_metric_default_note(default_metrics: list[str], dataset_size: int) -> Optional[str]:
    """On a CPU the default --metrics is dropped; this line says so, with the time it would have taken."""
    if not default_metrics or cuda_count() > 0:
        return None
    images = sum(_images_needed(name, dataset_size) for name in default_metrics)
    hours = images * CPU_SECONDS_PER_METRIC_IMAGE / max(usable_cores(), 1) / 3600
    names = ",".join(default_metrics)
    return (f"Note: no metrics by default on a CPU ({names} would take about {hours:.1f} h per snapshot here); "
            f"ask for them with --metrics={names}, or a small one such as --metrics=kid1k_full")


def _images_needed(metric: str, dataset_size: int) -> int:
    """Generated plus real images a metric runs through its detector (50k of each when the name says nothing)."""
    match = re.fullmatch(r"(?:fid|kid|pr)(\d+)(k?)\d*(_full)?", metric)
    if match is None:
        return 100_000
    fakes = int(match.group(1)) * (1000 if match.group(2) else 1)
    return fakes + (dataset_size if match.group(3) else fakes)

"""Launching a run once its options are resolved: in this process, as spawned processes, or under torchrun.

The launcher creates (or re-opens) the run directory and holds its lock, starts one process per rank, and
relays stop requests to spawned ranks (see training/stop_request.py). Errors are ConfigError /
RunWriteError / TrainingDiverged (one line; train.py prints them) or RanksFailed (a rank printed its own).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from typing import Any, Optional

import dnnlib
from training import devices
from training import run_dir as rundir
from training.checkpoint import Resume
from training.config import ConfigError
from training.run_dir import RunWriteError
from training.start_block import print_options
from training.stop_request import STOP_SIGNALS, StopRequest, shared_stop_value

RANK_ERROR_EXIT = 3  # a spawned rank that printed a one-line error exits with this code


class RanksFailed(Exception):
    """A spawned rank stopped after printing its one-line error: the launcher exits with status 1, silently."""


def launch(opts: dnnlib.EasyDict, run_dir: str, resume: Optional[Resume] = None) -> None:
    """`resume`: opts.resume_pkl as train.py read it; the in-process rank trains from it (spawned ranks read
    the pickle themselves: a loaded network is not worth pickling to them)."""
    if (devices.torchrun_world_size() or 1) > 1:
        launch_torchrun(opts, resume)
        return
    print_options(opts, run_dir)
    lock = create_run_dir(opts, run_dir)
    try:
        if opts.num_gpus == 1:
            subprocess_fn(0, opts, None, resume=resume)
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


def spawn_processes(opts: dict) -> None:
    """One process per GPU. A signal to this parent reaches the ranks through a shared value that each polls,
    so every rank finishes its step, snapshots and exits. The ranks start with SIGINT/SIGTERM blocked (the
    mask is inherited) until their loop handles them, so no signal kills a rank half-started."""
    import torch

    print(f"Launching {opts['num_gpus']} processes...")
    stop_value = shared_stop_value(torch.multiprocessing.get_context("spawn"))

    def request_stop(signum, _frame):
        if stop_value.value == 0:
            print(f"\nReceived {signal.Signals(signum).name}: asking every process to snapshot and exit...", flush=True)
        stop_value.value = signum

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with tempfile.TemporaryDirectory() as temp_dir:
            init_file = os.path.join(temp_dir, ".torch_distributed_init")
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
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
                raise RanksFailed() from None  # the rank printed its one-line error
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_torchrun(opts: dnnlib.EasyDict, resume: Optional[Resume] = None) -> None:
    """Under torchrun (one node or several) every rank parses the options; global rank 0's are
    authoritative: it creates the run directory, and every rank trains with its options."""
    from training import distributed

    rank, world_size = int(os.environ["RANK"]), devices.torchrun_world_size()
    if world_size != opts.num_gpus:
        raise ConfigError(f"--gpus={opts.num_gpus}: differs from torchrun's WORLD_SIZE={world_size}; "
                          f"leave --gpus out under torchrun")
    device = devices.default_device(int(os.environ.get("LOCAL_RANK", rank)), cpu_only=bool(opts.get("cpu_procs")))
    distributed.init_process_group(rank, world_size, None, device)
    opts = agree_on_options(opts, rank, device)
    lock = None
    if rank == 0:
        print_options(opts, opts.run_dir)
        lock = create_run_dir(opts, opts.run_dir)
    distributed.barrier()  # the run directory exists before any rank opens its log
    try:
        subprocess_fn(rank, opts, None, device=device, resume=resume)
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
        raise ConfigError(f"torchrun: the ranks resolved different training options ({detail}); "
                          f"give every node the same command line and a shared filesystem for --outdir and --data")
    return dnnlib.EasyDict(shared[0])


def subprocess_fn(rank: int, opts: dict, init_file: Optional[str], device: Any = None, stop_value: Any = None,
                  resume: Optional[Resume] = None) -> None:
    import torch

    from training import distributed
    from training.training_loop import training_loop

    stop = StopRequest(shared=stop_value, announce=rank == 0)
    stop.install()  # from here on a signal means: finish the step, snapshot, exit
    logger = dnnlib.util.Logger(file_name=os.path.join(opts["run_dir"], "log.txt"), file_mode="a", should_flush=True)
    try:
        if device is None:  # not yet in a process group (single process or spawned rank)
            device = devices.default_device(rank, cpu_only=bool(opts.get("cpu_procs")))
            distributed.init_process_group(rank, opts["num_gpus"], init_file, device)
        if device.type == "cpu" and opts["num_gpus"] > 1:  # share the cores instead of oversubscribing them
            torch.set_num_threads(devices.cpu_threads_per_process(opts["num_gpus"]))
        if rank != 0:
            logger.close()
            logger = None
        training_loop(opts, rank=rank, device=device, stop=stop, resume=resume)
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

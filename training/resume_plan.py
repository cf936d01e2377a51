"""What `--resume` means for this command: which pickle to read, and whether to continue a run directory.

`--resume=latest` and `--resume=<run dir>` continue that run in its own directory (the default
`--resume-mode=continue`): the newest snapshot is read, or, for a run killed before its first
snapshot, training restarts from zero there. `--resume-mode=new` keeps upstream's behaviour (a new
run directory that starts from the snapshot). A pickle path, URL or preset name always starts a new
run directory (transfer learning, or an exact continuation when the options match).

A run is continued only with the options that decide what is trained; duration, tick, snapshot,
metrics and performance options may change (the schedules that depend on `--kimg`, ADA-Linear's p
ramp and the diversity-aware fake queue, follow the new total). Everything here is pure Python.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

from training import checkpoint, preflight
from training import run_dir as rundir
from training.checkpoint import TRANSFER_KEYS, EXACT_RESUME_KEYS, comparable_options
from training.checkpoint import LEGACY_METHOD_FIELDS  # noqa: F401 (contrastive/presets.py imports it from here)
from training.config import RESUME_SPECS, ConfigError, DatasetInfo

RESUME_MODES = ("continue", "new")


class RunComplete(Exception):
    """The run to continue already reached --kimg: nothing to do."""


@dataclasses.dataclass
class ResumePlan:
    resume_pkl: Optional[str]  # the pickle the loop reads; None: train from zero
    continue_dir: Optional[str] = None  # an existing run directory to continue in; None: a new one
    previous_opts: Optional[dict] = None  # that run's training_options.json
    # When resume_pkl is the newest snapshot of a folder: the older ones, newest first, to fall back to
    # when it is damaged (train.py resumes from the newest intact one and says so).
    older_snapshots: list[str] = dataclasses.field(default_factory=list)


def plan_resume(resume: str, mode: str, outdir: str, opts: dict) -> ResumePlan:
    """Map --resume (preset, pickle, URL, run directory or 'latest') and --resume-mode to a plan."""
    if resume in RESUME_SPECS:
        return ResumePlan(RESUME_SPECS[resume])
    if resume == "latest":
        run = find_latest_run(outdir, opts, with_snapshot=mode == "new", option=f"--resume={resume}")
        return _plan_run(run, mode, resume)
    if os.path.isdir(resume):
        if rundir.is_run_dir(resume):
            _refuse_differences(resume, opts, option=f"--resume={resume}")
            return _plan_run(resume, mode, resume)
        snapshot = rundir.newest_snapshot(resume)  # a folder of snapshots that is no run of ours
        if snapshot is None:
            raise ConfigError(f"--resume={resume}: the directory holds no network-snapshot-*.pkl; "
                              f"give a run directory, a snapshot or 'latest'")
        return ResumePlan(snapshot, older_snapshots=_older_snapshots(resume))
    if os.path.isfile(resume):
        _check_pickle_magic(resume)
        return ResumePlan(resume)
    if "://" not in resume:
        raise ConfigError(f"--resume={resume}: no such pickle or run directory; check the path")
    return ResumePlan(resume)


def _plan_run(run: str, mode: str, resume: str) -> ResumePlan:
    snapshot = rundir.newest_snapshot(run)
    if mode == "new":
        if snapshot is None:
            raise ConfigError(f"--resume={resume}: {run} holds no snapshot yet; continue it with "
                              f"--resume-mode=continue (restarts from zero in that directory)")
        return ResumePlan(snapshot, older_snapshots=_older_snapshots(run))
    rundir.check_writable(run, option=f"--resume={resume}")
    rundir.check_not_in_use(run)
    return ResumePlan(snapshot, continue_dir=run, previous_opts=rundir.read_options(run),
                      older_snapshots=_older_snapshots(run))


def _older_snapshots(folder: str) -> list[str]:
    """Every snapshot of `folder` but the newest, newest first."""
    return list(reversed(rundir.list_snapshots(folder)[:-1]))


def apply_resume(opts: dict, cli: dict, info: DatasetInfo, mode: str) -> tuple[Optional[str], Optional[checkpoint.Resume]]:
    """Set resume_pkl / resume_kind in `opts` from --resume (`cli.resume`). Returns the run directory to continue
    in (None: a new one) and the resume pickle, read here once (None for a URL, read by the loop from the cache)."""
    plan = plan_resume(cli.resume, mode, cli.outdir, opts)
    if plan.continue_dir is not None:
        _continue_settings(plan, opts, cli)
    opts.resume_pkl = plan.resume_pkl
    if plan.resume_pkl is None:  # a run killed before its first snapshot: from zero, in its own directory
        opts.pop("resume_pkl")
        return plan.continue_dir, None
    if "://" in plan.resume_pkl:
        opts.resume_kind = checkpoint.decide_kind(plan.resume_pkl, None, opts)
        preflight.fetch_resume_url(cli.resume, plan.resume_pkl)  # into the cache the loop then reads from
        return plan.continue_dir, None
    candidates = [plan.resume_pkl, *plan.older_snapshots]
    opts.resume_pkl, data = preflight.newest_intact_snapshot(candidates, info, cond=bool(cli.cond),
                                                             option=f"--resume={cli.resume}")
    state = data.get("resume_state") or {}
    opts.resume_kind = checkpoint.decide_kind(opts.resume_pkl, state, opts)
    resume = checkpoint.Resume(path=opts.resume_pkl, data=data, kind=opts.resume_kind)
    if plan.continue_dir is None:
        return None, resume
    if not resume.exact:
        raise ConfigError(f"{opts.resume_pkl}: its resume state does not match the run's options; start a new run "
                          f"from its weights with --resume-mode=new")
    done_nimg = int(state["cur_nimg"])
    if done_nimg >= opts.total_kimg * 1000:
        raise RunComplete(f"Nothing to do: {plan.continue_dir} already reached kimg {done_nimg / 1000:g} "
                          f"(--kimg={opts.total_kimg:g}); raise --kimg to train longer.")
    if opts.get("stop_kimg") is not None and done_nimg >= opts.stop_kimg * 1000:
        raise RunComplete(f"Nothing to do: {plan.continue_dir} already reached kimg {done_nimg / 1000:g} "
                          f"(--stop-kimg={opts.stop_kimg:g}); raise --stop-kimg, or drop it to train to --kimg.")
    return plan.continue_dir, resume


def _continue_settings(plan: ResumePlan, opts: dict, cli: dict) -> None:
    """A continued run keeps its transfer settings and ADA speed (unless --ada-kimg is given again) and notes a
    changed --kimg."""
    inherit_transfer_settings(plan.previous_opts, opts)
    if cli.get("ada_kimg") is not None:  # a new ADA speed may be given when continuing (acts from the next adjustment)
        opts.ada_kimg = cli.ada_kimg
    elif "ada_kimg" in plan.previous_opts:  # otherwise the run keeps the speed it was started with
        opts.ada_kimg = plan.previous_opts["ada_kimg"]
    opts.continued_run = True
    if plan.previous_opts.get("total_kimg") != opts.total_kimg:
        opts.previous_total_kimg = number_from_options(plan.previous_opts.get("total_kimg"), "total_kimg")


def find_latest_run(outdir: str, opts: dict, with_snapshot: bool = False, option: str = "--resume=latest") -> str:
    """The newest run in `outdir` trained with the same options (kimg and the like may differ); for a new
    run directory (`with_snapshot`), the newest such run that has a snapshot."""
    runs = rundir.runs_newest_first(outdir)
    for run in runs:
        if first_difference(_read_options_or_none(run), opts) is None:
            if not with_snapshot or rundir.newest_snapshot(run) is not None:
                return run
    if not runs:
        raise ConfigError(f"{option}: no run in {outdir}; start one without --resume")
    newest = runs[0]
    diff = first_difference(_read_options_or_none(newest), opts)
    if diff is None:  # it matches, but has no snapshot (and a new directory was asked for)
        raise ConfigError(f"{option}: no run in {outdir} with these options has a snapshot yet; continue the newest "
                          f"with --resume-mode=continue (restarts from zero in its directory)")
    raise ConfigError(f"{option}: no run in {outdir} made with these options (the newest, {os.path.basename(newest)}, "
                      f"differs in {diff}); repeat its options or start a new run without --resume")


def _refuse_differences(run: str, opts: dict, option: str) -> None:
    diff = first_difference(_read_options_or_none(run), opts)
    if diff is not None:
        raise ConfigError(f"{option}: the run was made with another {diff}; repeat that run's options, or add "
                          f"--resume-mode=new to start a new run from its weights")


def _read_options_or_none(run: str) -> Optional[dict]:
    try:
        return rundir.read_options(run)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------
# Comparing a run's options with this command's.


def inherit_transfer_settings(previous: dict, opts: dict) -> None:
    """A continued transfer-learning run keeps its ADA speed and EMA ramp-up (this command names no preset)."""
    if previous.get("resume_kind") == "transfer":
        for key in TRANSFER_KEYS:
            if key in previous:
                opts[key] = number_from_options(previous[key], key)


def number_from_options(value: Any, key: str) -> Optional[float]:
    """A number read back from training_options.json: null or finite and >= 0, else a one-line ConfigError."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                         and math.isfinite(value) and 0 <= value <= 1e9):
        return value
    raise ConfigError(f"{rundir.OPTIONS_FILE}: {key}={str(value)[:40]!r} is not a number in [0, 1e9]; the file was "
                      f"edited or damaged: restore it, or start a new run without --resume")


def first_difference(previous: Optional[dict], opts: dict) -> Optional[str]:
    """The option (as the user types it) in which `opts` differ from a run's options; None if none does."""
    if previous is None:
        return "training_options.json (missing or unreadable)"
    previous = dict(previous)
    current = json.loads(json.dumps(dict(opts), default=str))  # the form training_options.json has
    try:
        inherit_transfer_settings(previous, current)
    except ConfigError:
        return "training_options.json (a damaged transfer setting)"
    previous, current = comparable_options(previous), comparable_options(current)
    if _lookup(previous, "method_kwargs.method") != _lookup(current, "method_kwargs.method"):
        return _option_for("method_kwargs.method", previous, current)  # not the first of its many consequences
    for key in EXACT_RESUME_KEYS:
        path = _first_differing_path(previous.get(key), current.get(key), key)
        if path is not None:
            return _option_for(path, previous, current)
    return None


def _first_differing_path(a: Any, b: Any, path: str) -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_differing_path(a.get(key), b.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    return None if a == b else path


_OPTION_OF_PATH = {  # most specific first
    "training_set_kwargs.path": "--data", "training_set_kwargs.resolution": "--data (resolution)",
    "training_set_kwargs.use_labels": "--cond", "training_set_kwargs.max_size": "--subset",
    "training_set_kwargs.xflip": "--mirror", "training_set_kwargs.random_seed": "--seed",
    "loss_kwargs.r1_gamma": "--gamma", "method_kwargs.method": "--method", "augment_kwargs": "--aug/--augpipe",
    "batch_size": "--batch", "batch_gpu": "--batch", "num_gpus": "--gpus", "random_seed": "--seed",
    "freeze_layers": "--freezed", "num_fp16_res": "--fp32", "conv_clamp": "--fp32", "fp16_channels_last": "--nhwc",
}


def _option_for(path: str, previous: dict, current: dict) -> str:
    option = next((opt for key, opt in _OPTION_OF_PATH.items() if path == key or path.startswith(key + ".")
                   or path.endswith("." + key)), None)
    if option is None and path.startswith("method_kwargs."):
        option = "--" + path.split(".", 1)[1]
    if option is None:
        option = "--cfg"  # networks, optimisers, regularisation intervals, EMA: the base config
    return f"{option} ({path}: {_lookup(previous, path)!r} there, {_lookup(current, path)!r} here)"


def _lookup(tree: Any, path: str) -> Any:
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _check_pickle_magic(path: str) -> None:
    """Refuse a file that is no pickle at all before anything else reads it."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if not (magic.startswith(b"\x80") or magic == b"PK\x03\x04"):  # pickle protocol >= 2, or a torch.save zip
        raise ConfigError(f"--resume={path}: not a network pickle (neither a pickle nor a torch.save archive); "
                          f"give a network-snapshot-*.pkl")

"""Snapshots as checkpoints: what a resume means, the one reader of the resume pickle, the options key, RNG streams.

A resume is one of RESUME_KINDS, decided once (`decide_kind`) by train.py and written to training_options.json
as `resume_kind`; the loop acts on it:
  exact     the snapshot's `resume_state` was written under this run's options key: weights, optimiser states,
            counters, ADA p, the method's state and every rank's RNG streams continue bit for bit.
  weights   the options that decide what is trained differ (or the snapshot has no resume state): G, D and G_ema
            are copied, everything else starts afresh (counters at zero, momentum copies re-taken from D).
  transfer  a published network (a preset name or URL): weights as above, with the transfer settings
            (set_transfer_settings; TRANSFER_KEYS), which a continued transfer run keeps.
Older snapshots and training_options.json lack method fields added since; LEGACY_METHOD_FIELDS holds the values
they implied, so those runs still resume exactly. Nothing here imports torch until a function needs it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any, Optional

from training.defaults import TRANSFER_ADA_KIMG, with_loop_defaults

SNAPSHOT_VERSION = 1
RESUME_KINDS = ("exact", "weights", "transfer")
TRANSFER_KEYS = ("ada_kimg", "ema_rampup")  # what set_transfer_settings sets
# The options an exact continuation depends on; duration, tick, snapshot, metric and speed options may change.
EXACT_RESUME_KEYS = ("training_set_kwargs", "G_kwargs", "D_kwargs", "G_opt_kwargs", "D_opt_kwargs", "loss_kwargs",
                     "augment_kwargs", "batch_size", "batch_gpu", "num_gpus", "random_seed", "method_kwargs",
                     "G_reg_interval", "D_reg_interval", "ema_kimg", "ema_rampup")
# Method fields added after runs were first written, with the value such older runs implied. A field is left
# out of every comparison where it holds that value or does not act in the run, so older runs still continue
# (exactly, when nothing else changed) and an ada run is not told it differs in a ContraGAN setting.
LEGACY_METHOD_FIELDS = {"cl_query_view": "shared", "contragan_mode": "projection"}


def comparable_options(options: dict) -> dict:
    """The EXACT_RESUME_KEYS part of `options`, with method fields that cannot matter left out (see above)."""
    picked = {key: options.get(key) for key in EXACT_RESUME_KEYS}
    method = picked.get("method_kwargs")
    if isinstance(method, dict):
        picked["method_kwargs"] = {k: v for k, v in method.items() if not _inert_method_field(method, k, v)}
    return picked


def _inert_method_field(method: dict, key: str, value: Any) -> bool:
    if key not in LEGACY_METHOD_FIELDS:
        return False
    if value == LEGACY_METHOD_FIELDS[key]:
        return True
    if key == "contragan_mode":
        return method.get("cond_loss", "none") != "2c"
    return not (method.get("fake_head") or method.get("real_head"))  # cl_query_view: instance heads only


def options_key(options: dict) -> str:
    """What must match between a snapshot and the current run for an exact continuation (`options` with the
    loop's defaults; see run_options_key for training_options.json content)."""
    return json.dumps(comparable_options(options), sort_keys=True, default=str)


def run_options_key(opts: dict) -> str:
    """options_key of training_options.json content as the loop sees it (with the loop's defaults)."""
    return options_key(with_loop_defaults(opts))


def set_transfer_settings(opts: dict, ada_kimg: Optional[float]) -> None:
    """Upstream's transfer learning from a published network: ADA reacts faster (an explicit --ada-kimg wins) and
    G_ema has no ramp-up (the network is trained already)."""
    opts["ada_kimg"] = TRANSFER_ADA_KIMG if ada_kimg is None else ada_kimg
    opts["ema_rampup"] = None


# ----------------------------------------------------------------------------
# Reading a snapshot and deciding what the resume means.


@dataclasses.dataclass
class Resume:
    """A resume pickle read once: its contents, its resume state (None for a published network) and the kind."""

    path: str
    data: dict
    kind: str

    @property
    def state(self) -> Optional[dict]:
        return self.data.get("resume_state")

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    def release(self) -> None:
        """Drop the loaded networks and state once restored: the launching frames keep this object for the run."""
        self.data = {}


def read_snapshot(path: str) -> dict:
    """The one reader of a resume pickle: the safe loader (allow-listed classes, checked digest)."""
    from training import network_pickle

    return network_pickle.load_network_pkl(path)


def decide_kind(path: str, state: Optional[dict], opts: dict) -> str:
    """exact / weights / transfer for a resume from `path` (see the module docstring)."""
    if "://" in path:
        return "transfer"
    if state is not None and state.get("options_key") == run_options_key(opts):
        return "exact"
    return "weights"


def load_resume(opts: dict, data: Optional[dict] = None) -> Optional[Resume]:
    """The Resume for opts.resume_pkl (None without one): `data` when train.py already read it, else read now;
    the kind is the one train.py decided (opts.resume_kind), or decided here for options written by a tool."""
    path = opts.get("resume_pkl")
    if not path:
        return None
    if data is None:
        data = read_snapshot(path)
    kind = opts.get("resume_kind")
    if kind not in RESUME_KINDS:
        kind = decide_kind(path, data.get("resume_state"), opts)
    return Resume(path=path, data=data, kind=kind)


def resume_for_run(opts: dict, given: Optional[Resume]) -> Optional[Resume]:
    """The Resume of opts.resume_pkl: the one train.py already read (`given`, same path), else read now."""
    if not opts.get("resume_pkl"):
        return None
    if given is not None and given.path == opts["resume_pkl"]:
        return given
    return load_resume(opts)


# ----------------------------------------------------------------------------
# Restoring a run from a Resume, and the resume state a snapshot carries.

METHOD_STATE_KEY = "hook"  # the method's state in resume_state (the name every snapshot has used)


def restore_networks(resume: Resume, networks: dict, augment_pipe: Any, method: Any) -> None:
    """Rank 0, before the broadcast: G, D and G_ema (present in `networks`) are copied; an exact resume also
    restores ADA's p and the method's state, any other resume restarts the method's momentum copies (e.g.
    D_ema) from the resumed D."""
    from torch_utils import misc

    data = resume.data
    for name, module in networks.items():
        if data.get(name) is not None:
            misc.copy_params_and_buffers(data[name], module, require_all=False)
    if resume.exact and augment_pipe is not None and data.get("augment_pipe") is not None:
        augment_pipe.p.copy_(data["augment_pipe"].p)
    if method is None:
        return
    if resume.exact and METHOD_STATE_KEY in resume.state:
        method.load_state_dict(resume.state[METHOD_STATE_KEY])
    else:  # weights only: D_ema was copied from the freshly initialised D
        method.restart_momentum_copies()


@dataclasses.dataclass
class Progress:
    """The counters an exact resume continues from."""

    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0


def restore_progress(state: dict, *, rank: int, phases: list, loss: Any, method: Any, ada: Any, latent_gen: Any,
                     label_rng: Any, device: Any) -> Progress:
    """An exact resume, after the broadcast: optimiser states, the path-length mean, the method's state on
    ranks > 0 (rank 0 has it from restore_networks), ADA's pending statistic and this rank's RNG streams.
    Older snapshots may lack the method, ADA or a rank's RNG entry; those parts then start afresh."""
    for phase in phases:
        if phase.name in state["optimizers"]:
            phase.opt.load_state_dict(state["optimizers"][phase.name])
    loss.pl_mean.copy_(state["pl_mean"])
    if method is not None and rank != 0 and METHOD_STATE_KEY in state:
        method.load_state_dict(state[METHOD_STATE_KEY])
    if hasattr(ada, "load_state_dict") and "ada" in state:
        ada.load_state_dict(state["ada"])
    rng = state["rng"].get(str(rank))
    if rng is not None:
        restore_rng(rng, latent_gen, label_rng, device)
    return Progress(int(state["cur_nimg"]), int(state["cur_tick"]), int(state["batch_idx"]))


def make_resume_state(opts: dict, progress: Progress, *, phases: list, loss: Any, method: Any, ada: Any,
                      rng_by_rank: list) -> dict:
    """Everything an exact resume needs (rank 0 writes it; `rng_by_rank`: every rank's capture_rng).
    Only the <X>main / <X>both optimisers are stored: <X>reg shares its optimiser with <X>main."""
    return dict(
        version=SNAPSHOT_VERSION, options_key=options_key(opts), cur_nimg=progress.cur_nimg,
        cur_tick=progress.cur_tick + 1,  # written in the tick's maintenance, before the tick counter advances
        batch_idx=progress.batch_idx,
        optimizers={phase.name: to_cpu(phase.opt.state_dict()) for phase in phases
                    if phase.name.endswith(("main", "both"))},
        pl_mean=loss.pl_mean.detach().cpu(),
        **{METHOD_STATE_KEY: to_cpu(method.state_dict()) if method is not None else {}},
        ada=ada.state_dict() if hasattr(ada, "state_dict") else {},
        rng={str(rank): value for rank, value in enumerate(rng_by_rank)},
    )


# ----------------------------------------------------------------------------
# RNG streams and tensors in a snapshot.


def capture_rng(latent_gen: Any, label_rng: Any, device: Any) -> dict:
    """This process's RNG streams: torch, numpy, python, the shared latent and label streams (and CUDA's)."""
    import numpy as np
    import torch

    state = dict(torch=torch.get_rng_state(), numpy=_np_state(np.random.get_state()), python=random.getstate(),
                 latent=latent_gen.get_state().cpu(), label=_np_state(label_rng.get_state()))
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, latent_gen: Any, label_rng: Any, device: Any) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(_np_unstate(state["numpy"]))
    random.setstate(_to_tuple(state["python"]))
    latent_gen.set_state(state["latent"])
    label_rng.set_state(_np_unstate(state["label"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _np_state(state: tuple) -> dict:
    import numpy as np
    import torch

    return dict(name=state[0], keys=torch.from_numpy(state[1].astype(np.int64)), pos=int(state[2]),
                has_gauss=int(state[3]), cached_gaussian=float(state[4]))


def _np_unstate(state: dict) -> tuple:
    import numpy as np

    return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["cached_gaussian"])


def _to_tuple(value: Any) -> Any:
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def to_cpu(obj: Any) -> Any:
    """Tensors (in dicts, lists and tuples) moved to the CPU, as a snapshot stores them."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj

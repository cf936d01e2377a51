"""Training statistics: cheap `report()` calls anywhere, reduced across ranks once per tick.

`report(name, value)` adds the value's count, sum and sum of squares to a per-device
accumulator without any host-device synchronisation. A `Collector` later gathers every
accumulator (summed over ranks when torch.distributed is initialised) and exposes
num/mean/std per name. Each gather hands its moments to every live collector, which keeps them
until its own next update: so a NaN or inf reported once shows in the intervals that contain it
and in no later one (running totals, upstream's design, would carry it for the rest of the process
and freeze ADA's r_t). The registry is per process, like Python's `logging`: the loss,
the augmentation pipe and the training loop report into it without passing handles around.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import defaultdict
from typing import Any

import numpy as np
import torch

_NUM_MOMENTS = 3  # [count, sum, sum of squares]
_REDUCE_DTYPE = torch.float64
_COUNTER_DTYPE = torch.float64

_lock = threading.Lock()
_sync_device: torch.device | None = None  # device used for cross-rank reductions
_rank = 0
_counters: dict[str, dict[torch.device, torch.Tensor]] = defaultdict(dict)  # name -> device -> moments
_collectors: "weakref.WeakSet[Collector]" = weakref.WeakSet()  # every live Collector receives every gather


def init_multiprocessing(rank: int, sync_device: torch.device | None) -> None:
    """Tell the module which rank this is and which device to reduce on (None: single process)."""
    global _rank, _sync_device
    _rank = rank
    _sync_device = sync_device


def report(name: str, value: Any) -> Any:
    """Record every element of `value` (tensor, number, or array) under `name`; returns `value`."""
    with _lock:
        _counters[name]  # register the name even for empty values, so every rank syncs the same names
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_REDUCE_DTYPE)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    device = moments.device
    with _lock:
        acc = _counters[name].get(device)
        if acc is None:
            _counters[name][device] = moments
        else:
            acc.add_(moments)
    return value


def report0(name: str, value: Any) -> Any:
    """Like `report`, but only rank 0 records (for values that are identical on every rank)."""
    report(name, value if _rank == 0 else [])
    return value


def _sync(names: list[str]) -> None:
    """Move the named accumulators to CPU (summed across ranks), reset them, and hand the moments to every
    live collector."""
    if not names:
        return
    deltas = []
    with _lock:
        for name in names:
            delta = torch.zeros(_NUM_MOMENTS, dtype=_COUNTER_DTYPE, device=_sync_device or "cpu")
            for acc in _counters[name].values():
                delta.add_(acc.to(delta.device))
                acc.zero_()
            deltas.append(delta)
    stacked = torch.stack(deltas)
    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(stacked)
    stacked = stacked.cpu()
    for collector in list(_collectors):
        collector._receive(names, stacked)


class Collector:
    """Reads the statistics reported since its previous `update()` for names matching `regex`.

    Every rank must call `update()` at the same time (it performs one all-reduce).
    """

    def __init__(self, regex: str = ".*", keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._pending: dict[str, torch.Tensor] = {}  # gathered since this collector's last update
        self._moments: dict[str, torch.Tensor] = {}
        _sync(self.names())  # what was reported before this collector existed goes to the others only
        _collectors.add(self)

    def _receive(self, names: list[str], moments: torch.Tensor) -> None:
        for idx, name in enumerate(names):
            if self._regex.fullmatch(name):
                if name in self._pending:
                    self._pending[name].add_(moments[idx])
                else:
                    self._pending[name] = moments[idx].clone()

    def names(self) -> list[str]:
        return sorted(name for name in _counters if self._regex.fullmatch(name))

    def update(self) -> None:
        if not self._keep_previous:
            self._moments.clear()
        _sync(self.names())
        for name, moments in self._pending.items():
            if moments[0] != 0:
                self._moments[name] = moments
        self._pending = {}

    def pending(self, name: str) -> torch.Tensor:
        """Moments [count, sum, sum of squares] reported since the last update(), without consuming them.

        A collective like update(): every rank calls it; the result is summed over ranks.
        """
        _sync([name])
        return self._pending.get(name, torch.zeros(_NUM_MOMENTS, dtype=_COUNTER_DTYPE)).clone()

    def moments(self, name: str) -> torch.Tensor:
        """Moments [count, sum, sum of squares] of the interval between the last two update() calls."""
        return self._get(name).clone()

    def _get(self, name: str) -> torch.Tensor:
        return self._moments.get(name, torch.zeros(_NUM_MOMENTS, dtype=_COUNTER_DTYPE))

    def num(self, name: str) -> int:
        return int(self._get(name)[0])

    def mean(self, name: str) -> float:
        m = self._get(name)
        return float("nan") if m[0] == 0 else float(m[1] / m[0])

    def std(self, name: str) -> float:
        m = self._get(name)
        if m[0] == 0 or not np.isfinite(float(m[1])):
            return float("nan")
        if m[0] == 1:
            return 0.0
        mean = float(m[1] / m[0])
        raw_var = float(m[2] / m[0])
        return float(np.sqrt(max(raw_var - mean * mean, 0.0)))

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: {"num": self.num(name), "mean": self.mean(name), "std": self.std(name)} for name in sorted(self._moments)}

    def __getitem__(self, name: str) -> float:
        return self.mean(name)


def reset_all() -> None:
    """Forget every statistic (used by tests and by a fresh training run in the same process)."""
    with _lock:
        _counters.clear()
    for collector in list(_collectors):
        collector._pending, collector._moments = {}, {}

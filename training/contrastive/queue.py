"""A time-stamped ring buffer of contrastive keys, kept on the device.

Keys and their insertion stamps live in preallocated buffers; enqueueing writes slices in
place, so there is no per-step allocation and no host-device synchronisation. The write
pointer and insertion count are host integers (every rank enqueues the same gathered batch,
so they agree across ranks) and are saved through the module's extra state.

Diversity-aware queue (FakeCLR): the *effective* length, i.e. how many of the newest entries
serve as negatives, can decrease linearly from the capacity to `min_length` over training.
Older entries are dropped first; the buffer itself keeps its size.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

QUEUE_SCHEDULES = ("fixed", "linear")


class TimestampedQueue(torch.nn.Module):
    """Ring buffer of keys [capacity, dim] with stamps [capacity] and an active-entry mask."""

    def __init__(self, capacity: int, dim: int, schedule: str = "fixed", min_length: Optional[int] = None,
                 name: str = "queue"):
        super().__init__()
        if capacity < 1:
            raise ValueError(f"{name}: the queue length must be at least 1 (got {capacity}); set a larger value")
        if schedule not in QUEUE_SCHEDULES:
            raise ValueError(f"{name}: unknown schedule {schedule!r}; use one of {', '.join(QUEUE_SCHEDULES)}")
        min_length = capacity if min_length is None else int(min_length)
        if not 1 <= min_length <= capacity:
            raise ValueError(f"{name}: the minimum length must lie in [1, {capacity}] (got {min_length})")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.schedule = schedule
        self.min_length = min_length
        self.name = name
        self.register_buffer("keys", torch.zeros(capacity, dim))
        self.register_buffer("stamps", torch.zeros(capacity, dtype=torch.int64))
        self.register_buffer("active", torch.zeros(capacity, dtype=torch.bool))
        self.num_inserted = 0
        self.effective_length = capacity

    # -- state ---------------------------------------------------------------

    @property
    def pointer(self) -> int:
        """Index the next key will be written to."""
        return self.num_inserted % self.capacity

    @property
    def num_valid(self) -> int:
        return min(self.num_inserted, self.capacity)

    @property
    def num_active(self) -> int:
        return min(self.num_valid, self.effective_length)

    def get_extra_state(self) -> dict[str, Any]:
        return {"num_inserted": self.num_inserted, "effective_length": self.effective_length,
                "capacity": self.capacity, "dim": self.dim}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity or state["dim"] != self.dim:
            raise ValueError(f"{self.name}: snapshot queue is {state['capacity']}x{state['dim']} but this run "
                             f"builds {self.capacity}x{self.dim}; resume with the same queue length (--fqs/--rqs)")
        self.num_inserted = int(state["num_inserted"])
        self.effective_length = int(state["effective_length"])

    # -- schedule ------------------------------------------------------------

    def length_at(self, progress: float) -> int:
        """Effective length at training progress in [0, 1] (fraction of total kimg)."""
        if self.schedule == "fixed":
            return self.capacity
        progress = min(max(float(progress), 0.0), 1.0)
        return int(round(self.capacity - (self.capacity - self.min_length) * progress))

    def set_progress(self, progress: float) -> None:
        length = self.length_at(progress)
        if length != self.effective_length:
            self.effective_length = length
            self._refresh_active()

    # -- writing -------------------------------------------------------------

    def enqueue(self, keys: torch.Tensor, stamp: Union[int, torch.Tensor]) -> None:
        """Append keys [B, dim] with one insertion stamp; when B > capacity the newest keys win."""
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"{self.name}: expected keys [B, {self.dim}], got {list(keys.shape)}")
        count = keys.shape[0]
        kept = keys[-self.capacity:].detach()
        start = (self.num_inserted + count - kept.shape[0]) % self.capacity
        self._write_slices(kept, stamp, start)
        self.num_inserted += count
        self._refresh_active()

    def _write_slices(self, keys: torch.Tensor, stamp: Union[int, torch.Tensor], start: int) -> None:
        first = min(keys.shape[0], self.capacity - start)
        self.keys[start:start + first].copy_(keys[:first])
        self.stamps[start:start + first].fill_(stamp)
        rest = keys.shape[0] - first
        if rest > 0:
            self.keys[:rest].copy_(keys[first:])
            self.stamps[:rest].fill_(stamp)

    def _refresh_active(self) -> None:
        """Mark the newest `num_active` entries (those just before the pointer, ring-wise)."""
        self.active.fill_(False)
        count, end = self.num_active, self.pointer
        if count == 0:
            return
        start = end - count
        if start >= 0:
            self.active[start:end] = True
        else:
            self.active[start % self.capacity:] = True
            self.active[:end] = True

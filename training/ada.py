"""Controllers of the augmentation probability `p` (the AugmentPipe's buffer).

The training loop calls `controller.update(augment_pipe, batch_idx=..., cur_nimg=..., batch_size=...)`
once per iteration, after advancing `cur_nimg` and `batch_idx`. Every controller acts only when
`batch_idx % interval == 0`, so they all share the loop's cadence.

- `AdaptiveP` (ADA): r_t = mean sign of D(real) over the last `interval` iterations; p moves by
  sign(r_t - target) * batch_size * interval / (kimg * 1000), floored at 0 (no upper clamp, as upstream).
  Its state_dict carries the signs gathered since the last adjustment, so a resume between two
  adjustments computes the same r_t as an uninterrupted run.
- `AdaLinear` (FakeCLR / InsGen `--ada_linear`): p = target * cur_nimg / (1000 * total_kimg), in [0, 1].
- `FixedP`: p stays where the loop put it (`--aug=fixed` and `--aug=noaug`).
"""

from __future__ import annotations

from typing import Optional

import torch

from torch_utils import training_stats
from training.ada_options import check_ada_kimg, check_ada_linear, check_interval, check_target

REAL_SIGN_STAT = "Loss/signs/real"


class PController:
    """Base: holds the update cadence; subclasses decide the new `p`."""

    def __init__(self, interval: int = 4):
        self.interval = check_interval(interval)

    def update(self, augment_pipe: Optional[torch.nn.Module], *, batch_idx: int, cur_nimg: int, batch_size: int) -> None:
        if augment_pipe is None or batch_idx % self.interval != 0:
            return
        new_p = self.next_p(float(augment_pipe.p), cur_nimg=cur_nimg, batch_size=batch_size)
        if new_p is not None:
            augment_pipe.p.copy_(torch.as_tensor(new_p, dtype=augment_pipe.p.dtype))

    def next_p(self, p: float, *, cur_nimg: int, batch_size: int) -> Optional[float]:
        return None


class FixedP(PController):
    """`p` is never changed (fixed augmentation, or no augmentation pipe at all)."""


class AdaptiveP(PController):
    """The ADA overfitting heuristic driven by the sign of D's real logits."""

    def __init__(self, target: float = 0.6, interval: int = 4, kimg: float = 500):
        super().__init__(interval)
        self.target = check_target(target)
        self.kimg = check_ada_kimg(kimg)
        self.collector = training_stats.Collector(REAL_SIGN_STAT)
        self.carried = torch.zeros(3, dtype=torch.float64)  # signs gathered before a snapshot, for an exact resume
        self.last_signal = float("nan")  # r_t of the latest adjustment, for logging

    def next_p(self, p: float, *, cur_nimg: int, batch_size: int) -> Optional[float]:
        self.collector.update()
        count, total, _ = (self.collector.moments(REAL_SIGN_STAT) + self.carried).tolist()
        self.carried.zero_()
        if count == 0:  # no D(real) reported yet (e.g. before the first D phase)
            return None
        signal = total / count
        self.last_signal = signal
        direction = (signal > self.target) - (signal < self.target)  # sign(r_t - target), 0 on a tie
        step = batch_size * self.interval / (self.kimg * 1000)
        return max(p + direction * step, 0.0)


    def state_dict(self) -> dict:
        """The sign statistic gathered since the last adjustment (a collective: every rank calls it)."""
        return {"pending_signs": self.collector.pending(REAL_SIGN_STAT) + self.carried}

    def load_state_dict(self, state: dict) -> None:
        if "pending_signs" in state:  # every rank adds the same all-rank total, so r_t stays identical
            self.carried = torch.as_tensor(state["pending_signs"], dtype=torch.float64).clone()


class AdaLinear(PController):
    """Linear ramp reaching `target` exactly at the end of training; ignores D's statistics."""

    def __init__(self, target: float = 0.6, total_kimg: float = 25000, interval: int = 4):
        super().__init__(interval)
        if not isinstance(total_kimg, (int, float)) or not total_kimg > 0:
            raise ValueError(f"ADA-Linear: --kimg={total_kimg!r} must be > 0")
        self.target, self.total_kimg = check_target(target), float(total_kimg)

    def next_p(self, p: float, *, cur_nimg: int, batch_size: int) -> Optional[float]:
        return min(max(self.target * cur_nimg / (1000 * self.total_kimg), 0.0), 1.0)


def make_ada_controller(aug: str, target: Optional[float] = 0.6, ada_linear: bool = False,
                        total_kimg: float = 25000, ada_kimg: float = 500, interval: int = 4) -> PController:
    """Controller for `--aug` in {'ada', 'fixed', 'noaug'} and `--ada_linear` (which needs --aug=ada)."""
    if aug not in ("ada", "fixed", "noaug"):
        raise ValueError(f"--aug={aug!r} is not one of ada, fixed, noaug")
    check_ada_linear(ada_linear, aug)
    if aug != "ada":
        return FixedP(interval)
    if target is None:
        raise ValueError("--aug=ada needs --target (default 0.6)")
    if ada_linear:
        return AdaLinear(target=target, total_kimg=total_kimg, interval=interval)
    return AdaptiveP(target=target, interval=interval, kimg=ada_kimg)

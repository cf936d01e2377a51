"""The checks of ADA's options, shared by train.py's option checks and the p controllers (training/ada.py).

Torch-free, so that train.py refuses a bad option before it imports torch. Each raises a ValueError whose
message is one line naming the option and the fix (train.py prints it as it is).
"""

from __future__ import annotations

from typing import Any, Optional


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_target(target: Any) -> float:
    """--target: ADA's target for mean sign(D(real)), also ADA-Linear's final p."""
    if not _is_number(target) or not 0 <= target <= 1:
        raise ValueError(f"--target={target}: must lie in [0, 1]")
    return float(target)


def check_ada_kimg(kimg: Any) -> float:
    """--ada-kimg: kimg of reals for ADA's p to move by 1."""
    if not _is_number(kimg) or not kimg > 0:
        shown = f"{kimg:g}" if _is_number(kimg) else repr(kimg)
        raise ValueError(f"--ada-kimg={shown}: must be > 0 (kimg for ADA's p to move by 1; default 500)")
    return float(kimg)


def check_interval(interval: Any) -> int:
    """ada_interval: iterations between adjustments of p."""
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f"ADA: ada_interval={interval!r} must be an integer >= 1")
    return interval


def check_ada_linear(ada_linear: bool, aug: str, ada_kimg: Optional[float] = None) -> None:
    """--ada_linear ramps ADA's p to --target, so it needs --aug=ada and has no use for --ada-kimg."""
    if ada_linear and aug != "ada":
        raise ValueError(f"--ada_linear needs --aug=ada (got --aug={aug}); drop --ada_linear or use --aug=ada")
    if ada_linear and ada_kimg is not None:
        raise ValueError("--ada-kimg sets the adaptive controller's speed; ADA-Linear's ramp ignores it: drop --ada-kimg")

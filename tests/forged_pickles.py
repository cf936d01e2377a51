"""Building blocks of hand-forged pickles, shared by the loading and security tests."""

from __future__ import annotations

import pickle
import pickletools

import torch


class Reduce:
    """Pickles as func(*args), the way a forger writes a record by hand."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def storage_blob(tensor: torch.Tensor) -> bytes:
    """The legacy torch.save blob that pickle embeds for a tensor's storage."""
    ops = pickletools.genops(pickle.dumps(tensor))
    return next(arg for op, arg, _ in ops if op.name in ("BINBYTES", "SHORT_BINBYTES"))

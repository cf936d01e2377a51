"""The labels a dataset may carry, checked by dataset_tool.py and by train.py before anything is allocated.

A class index k makes the conditioning input k + 1 wide (one-hot), so an index of 10**9 would ask for
gigabytes of embedding weights and 10**30 does not fit an integer array at all; a label vector's
length is the conditioning width too. Values must be finite: one NaN label turns every loss NaN.
Pure Python (dataset_tool.py imports it without torch).
"""

from __future__ import annotations

import math
from typing import Any, Optional

MAX_CLASSES = 65536  # class indices 0..65535 (ImageNet-21k has 21,841 classes)
MAX_LABEL_DIM = 65536  # values in one label vector
MAX_LABEL_MAGNITUDE = 1e6  # |value| of a label-vector entry; real attribute vectors are O(1)


def label_problem(label: Any) -> Optional[str]:
    """Why one dataset.json label is out of range (e.g. "class index 1000000000 is not in 0..65535"), or None.
    Labels that are neither class indices nor number lists are left to the callers' type checks."""
    if isinstance(label, int) and not isinstance(label, bool):
        if not 0 <= label < MAX_CLASSES:
            return f"class index {_short(label)} is not in 0..{MAX_CLASSES - 1}"
        return None
    if not isinstance(label, list):
        return None
    if len(label) > MAX_LABEL_DIM:
        return f"the label vector has {len(label)} values, more than {MAX_LABEL_DIM}"
    for value in label:
        if isinstance(value, float) and not math.isfinite(value):
            return f"the label vector holds {value}, which is not a finite number"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_LABEL_MAGNITUDE:
            return f"the label vector holds {_short(value)}, larger in magnitude than {MAX_LABEL_MAGNITUDE:g}"
    return None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


FIX = "use class indices 0, 1, 2, ... or finite label vectors (see docs/dataset_tool.md)"

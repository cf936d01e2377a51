"""The GPU suite's own measurement: build each CUDA plugin, timed, then let its self-check run.

    python benchmarks/suite/probes.py build

Prints one JSON line per op: build_s, the error if it did not build, and the self-check result
(torch_utils/ops/plugin_selfcheck.py); `usable` is true when the op will run fused.
The build goes where FAKECLR_PLUGIN_DIR points (the suite sets it, so later steps reuse it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _first_calls() -> dict[str, Callable[[], object]]:
    """A first call of each op on the GPU: dispatch loads the plugin and runs its self-check."""
    import torch

    from torch_utils.ops import bias_act, upfirdn2d

    x = torch.randn(2, 8, 8, 8, device="cuda")
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=x.device)
    return {"bias_act": lambda: bias_act.bias_act(x, act="lrelu"),
            "upfirdn2d": lambda: upfirdn2d.upsample2d(x, f)}


def probe_build() -> None:
    import warnings

    from torch_utils import custom_ops
    from torch_utils.ops import plugin_dispatch

    first_calls = _first_calls()
    for op_name in custom_ops.OP_PLUGINS:
        start = time.perf_counter()
        record = dict(op=op_name, error=None)
        try:
            custom_ops.get_plugin_for_op(op_name)
        except Exception as error:  # noqa: BLE001 -- reported, the suite goes on
            lines = str(error).strip().splitlines() or [""]
            record["error"] = f"{type(error).__name__}: {lines[-1]}"  # the compiler's last line names the failure
        record["build_s"] = round(time.perf_counter() - start, 1)
        if record["error"] is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a failing self-check is reported below
                first_calls[op_name]()
            check = plugin_dispatch.self_check_results().get(op_name)
            record["self_check"] = None if check is None else dict(
                passed=check.passed, worst_error_ratio=round(check.worst_error_ratio, 4),
                milliseconds=round(check.milliseconds, 1), summary=check.summary())
        record["usable"] = record["error"] is None and bool((record.get("self_check") or {}).get("passed"))
        print(json.dumps(record), flush=True)


PROBES = {"build": probe_build}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PROBES:
        sys.exit(f"Error: probes.py: expected one of {', '.join(PROBES)}; e.g. python benchmarks/suite/probes.py build")
    PROBES[sys.argv[1]]()

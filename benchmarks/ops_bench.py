"""Fused (CUDA plugin) vs reference ops, forward + backward, on the shapes of a 256 px StyleGAN2.

Prints one JSON line per measurement and one per op with the speed-up ratio (reference time /
fused time, both measured in this run) and the agreement of the two paths on that shape (the
relative error of the output and of the input gradient, against the self-check's tolerance).
On a machine without a GPU the "fused" path falls back to the reference, so the ratio is ~1 and
only checks that the harness works.

    python benchmarks/ops_bench.py                      # GPU if present, batch 64 (CPU: batch 2)
    python benchmarks/ops_bench.py --batch 8 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_utils.ops import bias_act, plugin_dispatch, upfirdn2d  # noqa: E402
from torch_utils.ops.plugin_selfcheck import TOLERANCE, relative_error  # noqa: E402


def _time_ms(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    step()  # warm-up (and plugin build)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def _forward_backward(make_output: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    x = x.detach().requires_grad_(True)

    def step() -> None:
        y = make_output(x)
        y.backward(torch.ones_like(y))
        x.grad = None
    return step


def _errors(op_for_impl: Callable[[str], Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> dict:
    """Relative error of the fused output and input gradient against the reference, same input and dy."""
    results = {}
    for impl in ("cuda", "ref"):
        leaf = x.detach().requires_grad_(True)
        y = op_for_impl(impl)(leaf)
        dy = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(1), device=y.device,
                         dtype=y.dtype)
        (dx,) = torch.autograd.grad(y, [leaf], dy)
        results[impl] = (y.detach(), dx)
    return dict(fwd_error=relative_error(results["cuda"][0], results["ref"][0]),
                grad_error=relative_error(results["cuda"][1], results["ref"][1]))


def _cases(batch: int, device: torch.device, dtype: torch.dtype):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    b512 = torch.randn(512, device=device, dtype=dtype)
    yield ("bias_act lrelu+clamp", [batch, 512, 32, 32],
           lambda impl: lambda x: bias_act.bias_act(x, b512, act="lrelu", clamp=256, impl=impl))
    yield ("upfirdn2d up=2 (upsample2d)", [batch, 256, 64, 64],
           lambda impl: lambda x: upfirdn2d.upsample2d(x, f, impl=impl))
    yield ("upfirdn2d down=2 (downsample2d)", [batch, 256, 64, 64],
           lambda impl: lambda x: upfirdn2d.downsample2d(x, f, impl=impl))
    yield ("upfirdn2d filter2d", [batch, 128, 128, 128],
           lambda impl: lambda x: upfirdn2d.filter2d(x, f, impl=impl))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default 64 on GPU, 2 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="default 20 on GPU, 2 on CPU")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    batch = args.batch or (64 if on_gpu else 2)
    repeats = args.repeats or (20 if on_gpu else 2)
    dtype = getattr(torch, args.dtype)
    torch.backends.cudnn.allow_tf32 = False  # true float32 in the reference convolutions, as in training by default
    for name, shape, op_for_impl in _cases(batch, device, dtype):
        x = torch.randn(shape, device=device, dtype=dtype)
        times = {impl: _time_ms(_forward_backward(op_for_impl(impl), x), device, repeats) for impl in ("cuda", "ref")}
        errors = _errors(op_for_impl, x)
        for impl, ms in times.items():
            print(json.dumps({"op": name, "impl": impl, "shape": shape, "dtype": args.dtype, "device": str(device),
                              "ms_fwd_bwd": round(ms, 3)}))
        checks = plugin_dispatch.self_check_results()
        plugin_used = on_gpu and os.environ.get("FAKECLR_OPS", "") != "ref" and all(
            op in checks and checks[op].passed for op in ("bias_act", "upfirdn2d") if name.startswith(op))
        tolerance = TOLERANCE[dtype]
        print(json.dumps({"op": name, "shape": shape, "device": str(device), "dtype": args.dtype,
                          "speedup_fused_vs_ref": round(times["ref"] / times["cuda"], 2),
                          "fused_ms": round(times["cuda"], 3), "ref_ms": round(times["ref"], 3),
                          **{k: float(f"{v:.3g}") for k, v in errors.items()}, "tolerance": tolerance,
                          "agrees": max(errors.values()) <= tolerance, "plugin_used": plugin_used}))


if __name__ == "__main__":
    main()

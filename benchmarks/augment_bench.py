"""Throughput of the AugmentPipe: img/s of the `bgc` pipe vs no augmentation, forward + backward.

Prints one JSON line per configuration and one with the cost ratio measured in this run.
Defaults follow the issue: 256 px, batch 64, p = 1 (every augmentation drawn at its maximum rate).

    python benchmarks/augment_bench.py                       # GPU if present
    python benchmarks/augment_bench.py --res 64 --batch 8 --repeats 3   # quick CPU check
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training.augment import AUGPIPE_SPECS, AugmentPipe  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(pipe: AugmentPipe | None, images: torch.Tensor, repeats: int) -> float:
    """Seconds per batch for pipe(images) plus a backward pass into the images (as G sees it)."""
    def step():
        x = images.detach().requires_grad_(True)
        y = x if pipe is None else pipe(x)
        y.square().sum().backward()

    step()  # warm-up
    _sync(images.device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _sync(images.device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--p", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--augpipe", default="bgc", choices=sorted(AUGPIPE_SPECS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    images = torch.rand([args.batch, 3, args.res, args.res], device=device) * 2 - 1
    pipe = AugmentPipe(**AUGPIPE_SPECS[args.augpipe]).to(device)
    pipe.p.fill_(args.p)
    common = dict(res=args.res, batch=args.batch, p=args.p, device=str(device),
                  device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    seconds = {}
    for name, candidate in (("none", None), (args.augpipe, pipe)):
        seconds[name] = measure(candidate, images, args.repeats)
        print(json.dumps(dict(benchmark="augment", augpipe=name, img_per_s=round(args.batch / seconds[name], 1),
                              ms_per_batch=round(seconds[name] * 1000, 3), **common)))
    print(json.dumps(dict(benchmark="augment_ratio", augpipe=args.augpipe,
                          slowdown_vs_none=round(seconds[args.augpipe] / seconds["none"], 2), **common)))


if __name__ == "__main__":
    main()

"""Detector throughput (images/s) on the current device; one JSON line per detector.

  python benchmarks/metrics_bench.py                 # CUDA if available, batch 64
  python benchmarks/metrics_bench.py --device=cpu --iters=2

Inputs are 64 px uint8 images (the embedded emoji set's size), so the Inception numbers include the resize to
299 px. Compare the lines of one run with each other; the H100 target for Inception features is >= 2,000 img/s.
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

from metrics import detectors  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(fn: Callable[[], torch.Tensor], batch: int, iters: int, device: torch.device) -> float:
    with torch.no_grad():
        fn()  # warm-up: cuDNN algorithm choice, allocator
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=None, help="timed batches (default 20 on CUDA, 2 on CPU)")
    parser.add_argument("--res", type=int, default=64, help="input image resolution")
    args = parser.parse_args()
    device = torch.device(args.device)
    iters = args.iters or (20 if device.type == "cuda" else 2)
    img = torch.randint(0, 256, (args.batch, 3, args.res, args.res), dtype=torch.uint8, device=device)

    inception = detectors.get_inception(device)
    vgg = detectors.get_vgg16(device)
    cases = {
        "inception_features": lambda: inception(img, return_features=True),
        "vgg16_embedding": lambda: vgg.embed(img),
        "vgg16_lpips_pairs": lambda: vgg.lpips(img, img.flip(0)),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for case, fn in cases.items():
        rate = images_per_second(fn, args.batch, iters, device)
        print(json.dumps({"benchmark": "metrics_detectors", "case": case, "device": name, "batch": args.batch,
                          "res": args.res, "iters": iters, "img_per_s": round(rate, 1)}), flush=True)


if __name__ == "__main__":
    main()

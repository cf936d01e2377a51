"""Detector throughput (images/s) on the current device; one JSON line per detector.

  python benchmarks/metrics_bench.py                 # CUDA if available, batch 64
  python benchmarks/metrics_bench.py --device=cpu --iters=2
  python benchmarks/metrics_bench.py --batch=256 --cases=inception_features   # the GPU suite's figure

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


def _inception_features(device: torch.device, img: torch.Tensor) -> Callable[[], torch.Tensor]:
    inception = detectors.get_inception(device)
    return lambda: inception(img, return_features=True)


def _vgg16_embedding(device: torch.device, img: torch.Tensor) -> Callable[[], torch.Tensor]:
    vgg = detectors.get_vgg16(device)
    return lambda: vgg.embed(img)


def _vgg16_lpips_pairs(device: torch.device, img: torch.Tensor) -> Callable[[], torch.Tensor]:
    vgg = detectors.get_vgg16(device)
    return lambda: vgg.lpips(img, img.flip(0))


CASES = {"inception_features": _inception_features, "vgg16_embedding": _vgg16_embedding,
         "vgg16_lpips_pairs": _vgg16_lpips_pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=None, help="timed batches (default 20 on CUDA, 2 on CPU)")
    parser.add_argument("--res", type=int, default=64, help="input image resolution")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    device = torch.device(args.device)
    iters = args.iters or (20 if device.type == "cuda" else 2)
    img = torch.randint(0, 256, (args.batch, 3, args.res, args.res), dtype=torch.uint8, device=device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for case in cases:
        rate = images_per_second(CASES[case](device, img), args.batch, iters, device)
        print(json.dumps({"benchmark": "metrics_detectors", "case": case, "device": name, "batch": args.batch,
                          "res": args.res, "iters": iters, "img_per_s": round(rate, 1)}), flush=True)


if __name__ == "__main__":
    main()

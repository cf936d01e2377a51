"""G and D forward+backward throughput (images/s) per resolution, on the current device.

    python benchmarks/networks_bench.py [--res 32,64,128,256] [--batch 8] [--iters 5] [--cfg auto|paper256|stylegan2]
                                        [--fp32] [--nhwc] [--small]

Networks use the train.py configuration for the chosen cfg (mixed precision on the top 4
resolutions with conv clamp 256 unless --fp32; FP16 only takes effect on CUDA). `--small` divides
the channel counts by 8 so the script is quick on a CPU. Each result is one JSON line; compare
numbers within one run only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from training import networks  # noqa: E402


def channel_base_for(cfg: str, res: int) -> int:
    if cfg == "auto":
        return 32768 if res >= 512 else 16384
    return {"paper256": 16384, "stylegan2": 32768}[cfg]


def build(cfg: str, res: int, fp32: bool, nhwc: bool, small: bool, device: torch.device):
    divisor = 8 if small else 1
    common = dict(channel_base=channel_base_for(cfg, res) // divisor, channel_max=512 // divisor,
                  num_fp16_res=0 if fp32 else 4, conv_clamp=None if fp32 else 256)
    map_layers = 2 if cfg == "auto" else 8
    G = networks.Generator(512 // divisor, 0, 512 // divisor, res, 3, mapping_kwargs=dict(num_layers=map_layers),
                           synthesis_kwargs=dict(common, fp16_channels_last=nhwc))
    D = networks.Discriminator(0, res, 3, block_kwargs=dict(fp16_channels_last=nhwc), **common)
    return G.train().to(device), D.train().to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, iters: int, device: torch.device) -> float:
    step()  # warm-up (cuDNN autotune, allocator)
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return (time.perf_counter() - start) / iters


def bench_resolution(args, res: int, device: torch.device) -> list[dict]:
    G, D = build(args.cfg, res, args.fp32, args.nhwc, args.small, device)
    z = torch.randn(args.batch, G.z_dim, device=device)
    reals = torch.randn(args.batch, 3, res, res, device=device)

    def g_step():
        G.zero_grad(set_to_none=True)
        G(z, None).square().mean().backward()

    def d_step():
        D.zero_grad(set_to_none=True)
        torch.nn.functional.softplus(-D(reals, None)).mean().backward()

    results = []
    for name, step in (("G", g_step), ("D", d_step)):
        seconds = time_steps(step, args.iters, device)
        results.append(dict(bench="networks", net=name, op="fwd+bwd", res=res, batch=args.batch, cfg=args.cfg,
                            fp32=args.fp32, nhwc=args.nhwc, small=args.small, device=str(device),
                            sec_per_iter=round(seconds, 5), img_per_s=round(args.batch / seconds, 2)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="32,64,128,256", help="comma-separated resolutions")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--cfg", default="auto", choices=["auto", "paper256", "stylegan2"])
    parser.add_argument("--fp32", action="store_true", help="disable mixed precision")
    parser.add_argument("--nhwc", action="store_true", help="channels-last for the FP16 layers")
    parser.add_argument("--small", action="store_true", help="channels / 8 (quick CPU runs)")
    args = parser.parse_args()
    try:
        resolutions = [int(r) for r in args.res.split(",")]
    except ValueError:
        parser.error(f"--res={args.res!r}: expected comma-separated integers such as 32,64,128")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for res in resolutions:
        for result in bench_resolution(args, res, device):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Loader throughput (images/s) of ImageFolderDataset at 256 px from a zip, with 0 and 2 DataLoader workers.

    python benchmarks/dataset_bench.py [--passes 3] [--batch 32]

Builds the zip once from the embedded emoji set (64 px, upscaled to 256 px with dataset_tool.py), then times
full passes over it for each (workers, RAM cache) setting. Prints one JSON line per result; compare the numbers
within one run only (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import dataset_tool  # noqa: E402
from training.dataset import ImageFolderDataset  # noqa: E402

EMBEDDED = pathlib.Path(__file__).resolve().parents[1] / "datasets" / "emoji-smileys"


def build_zip(folder: str) -> str:
    dest = os.path.join(folder, "emoji256.zip")
    with contextlib.redirect_stderr(io.StringIO()):  # keep stdout/stderr free of the tool's progress bar
        dataset_tool.convert_dataset(source=str(EMBEDDED), dest=dest, resolution="256x256")
    return dest


def time_loader(path: str, workers: int, cache_in_ram: bool, batch: int, passes: int) -> dict:
    start = time.perf_counter()
    dataset = ImageFolderDataset(path, cache_in_ram=cache_in_ram)
    setup_s = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, drop_last=False)
    for _ in loader:  # warm-up pass: starts workers, fills the page cache
        pass
    start = time.perf_counter()
    count = 0
    for _ in range(passes):
        for images, _labels in loader:
            count += images.shape[0]
    elapsed = time.perf_counter() - start
    return {"bench": "dataset_loader", "resolution": dataset.resolution, "images": len(dataset), "workers": workers,
            "cache_in_ram": cache_in_ram, "batch": batch, "passes": passes, "setup_s": round(setup_s, 3),
            "img_per_s": round(count / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the dataset per setting")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_zip(tmp)
        results = []
        for cache_in_ram in (False, True):
            for workers in (0, 2):
                result = time_loader(path, workers, cache_in_ram, args.batch, args.passes)
                results.append(result)
                print(json.dumps(result), flush=True)
        base = results[0]["img_per_s"]
        for r in results[1:]:
            print(json.dumps({"bench": "dataset_loader_ratio", "workers": r["workers"], "cache_in_ram": r["cache_in_ram"],
                              "speedup_vs_zip_0_workers": round(r["img_per_s"] / base, 2)}), flush=True)


if __name__ == "__main__":
    main()

"""How many generated images should a benchmark score use? Measure spread and cost of FID/KID against N.

Scoring one snapshot "several times with different fake seeds" at N = 200, 500, 1000 is done here
from ONE pool of generated images: the pool (seed --seed) is cut into disjoint blocks of N images,
and every block is an independent draw of N fakes (its latents share nothing with the other blocks),
so the spread over blocks is the spread over fake seeds, at a third of the cost. The real statistics
(the full training set, x-flips as in training) are computed once and cached as usual.

Seconds per score = generator + Inception time per image (measured on the pool) × N, plus the measured
FID/KID arithmetic for that N. Output (atomic): a JSON file with, per N, the scores of every block,
their mean, std (ddof=1) and the seconds per score.

Example (one thread; about 0.3-0.6 s per image on a shared 2-core CPU):
    OMP_NUM_THREADS=1 python scripts/measure_num_gen.py --network=RUN/network-snapshot-000010.pkl \
        --pool=2000 --num-gen=200,500,1000 --out=examples/cpu-bench/num_gen.json
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.measure_num_gen`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import json
import os
import time

import click
import numpy as np

from dnnlib.util import atomic_write


def score_blocks(real_all: np.ndarray, real_mean_cov: tuple, fakes: np.ndarray, num_gen: int, kid_seed: int) -> dict:
    """FID and KID of every disjoint block of num_gen fakes; seconds of the arithmetic per block."""
    from metrics.frechet_distance import frechet_distance
    from metrics.kernel_inception_distance import kernel_inception_distance

    fids, kids, seconds = [], [], []
    for start in range(0, len(fakes) - num_gen + 1, num_gen):
        block = fakes[start:start + num_gen].astype(np.float64)
        began = time.time()
        fids.append(float(frechet_distance(block.mean(0), np.cov(block, rowvar=False), *real_mean_cov)))
        np.random.seed(kid_seed)
        kids.append(float(kernel_inception_distance(real_all, block.astype(np.float32), 100, 1000)))
        seconds.append(time.time() - began)
    return dict(fid=fids, kid=kids, arithmetic_seconds=float(np.mean(seconds)))


def summary(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return dict(mean=float(arr.mean()), std=float(arr.std(ddof=1)) if len(arr) > 1 else None)


@click.command()
@click.option("--network", required=True, metavar="PKL", help="Snapshot to score")
@click.option("--pool", type=int, default=2000, show_default=True, help="Generated images in the pool")
@click.option("--num-gen", default="200,500,1000", show_default=True, help="Comma-separated block sizes N")
@click.option("--seed", type=int, default=0, show_default=True, help="Latent seed of the pool")
@click.option("--out", required=True, metavar="JSON", help="Where to write the measurement")
def main(network: str, pool: int, num_gen: str, seed: int, out: str) -> None:
    """Score one snapshot with disjoint blocks of N fakes: std and seconds per N."""
    import torch

    from metrics import runners
    from metrics.features import MetricOptions, compute_dataset_stats, compute_generator_stats
    from training.dataset_options import DatasetOptionsError, dataset_kwargs_from_file
    from training.network_pickle import load_network_pkl

    sizes = sorted({int(n) for n in num_gen.split(",") if n.strip()})
    if not sizes or sizes[0] < 2 or pool < 2 * sizes[-1]:
        raise click.ClickException(f"--num-gen={num_gen} --pool={pool}: sizes must be >= 2 and the pool must hold "
                                   f"at least two blocks of the largest size")
    if not os.path.isfile(network):
        raise click.ClickException(f"--network={network}: no such file")
    data = load_network_pkl(network)
    try:
        kwargs = dataset_kwargs_from_file(data.get("training_set_kwargs"), network)
    except DatasetOptionsError as error:
        raise click.ClickException(f"{error}; this script scores against the snapshot's own training set") from None
    opts = MetricOptions(G=data["G_ema"], dataset_kwargs=kwargs, device=torch.device("cpu"), batch_size=32, progress=True)
    detector = runners.inception_features(opts)
    real = compute_dataset_stats(opts, detector, max_items=None, capture_all=True, capture_mean_cov=True)
    began = time.time()
    fakes = compute_generator_stats(opts, detector, pool, seed=seed, capture_all=True).get_all()
    per_image = (time.time() - began) / pool
    results = dict(network=os.path.abspath(network), kimg=(data.get("resume_state") or {}).get("cur_nimg", 0) / 1000,
                   pool=pool, seed=seed, threads=torch.get_num_threads(), load_average=list(os.getloadavg()),
                   seconds_per_image=per_image, sizes={})
    for n in sizes:
        blocks = score_blocks(real.get_all(), real.get_mean_cov(), fakes, n, kid_seed=seed)
        results["sizes"][str(n)] = dict(blocks=len(blocks["fid"]), fid=summary(blocks["fid"]), kid=summary(blocks["kid"]),
                                        fid_values=blocks["fid"], kid_values=blocks["kid"],
                                        seconds_per_score=per_image * n + blocks["arithmetic_seconds"])
        print(f"N={n}: {results['sizes'][str(n)]}")
    with atomic_write(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()

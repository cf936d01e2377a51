"""How much the forgetting factor changes FakeCLR's InfoNCE, in nats, per mode and queue shape.

For each global batch B and queue length N the real `TimestampedQueue` is filled as in training
(B keys per iteration, stamped with the iteration, until it has wrapped), then B queries are
scored against it with `info_nce` and the margin of `forgetting_margin`:

    delta = mean loss with m_i  -  mean loss without (forgetting_mode=off)

Keys and queries are random unit vectors in 128-d (cosines ~ N(0, 1/128), as for an untrained head);
each positive has cosine `--pos_cos` with its query. One JSON line per configuration, then a table.

    python benchmarks/forgetting_magnitude.py
    python benchmarks/forgetting_magnitude.py --batches=64 --queues=200 --pos_cos=0.9
"""

from __future__ import annotations

import json
import os
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIM = 128


def filled_queue(batch: int, length: int, generator):
    """A queue after enough iterations of `batch` keys each to have wrapped at least twice."""
    import torch

    from training.contrastive.queue import TimestampedQueue

    queue = TimestampedQueue(length, DIM)
    for iteration in range(2 * length // batch + 2):
        keys = torch.nn.functional.normalize(torch.randn(batch, DIM, generator=generator), dim=1)
        queue.enqueue(keys, iteration)
    return queue


def queries_and_positives(batch: int, pos_cos: float, generator):
    """Unit queries and unit positives at cosine `pos_cos` (a random orthogonal direction each)."""
    import torch

    q = torch.nn.functional.normalize(torch.randn(batch, DIM, generator=generator), dim=1)
    other = torch.randn(batch, DIM, generator=generator)
    other = torch.nn.functional.normalize(other - (other * q).sum(1, keepdim=True) * q, dim=1)
    return q, pos_cos * q + (1 - pos_cos ** 2) ** 0.5 * other


def measure(batch: int, length: int, mode: str, tau: float, tau_m: float, pos_cos: float, seed: int) -> dict:
    import torch

    from training.contrastive.losses import forgetting_margin, info_nce

    generator = torch.Generator().manual_seed(seed)
    queue = filled_queue(batch, length, generator)
    q, k = queries_and_positives(batch, pos_cos, generator)
    margin = forgetting_margin(mode, queue.stamps, queue.active, tau_m)
    plain = info_nce(q, k, queue.keys, tau, queue.active, None).mean()
    loss = info_nce(q, k, queue.keys, tau, queue.active, margin).mean()
    newest = queue.stamps == queue.stamps.max()
    return dict(batch=batch, queue=length, mode=mode, tau=tau, tau_m=tau_m if mode == "paper" else None,
                pos_cos=pos_cos, loss_off=float(plain), loss=float(loss), delta_nats=float(loss - plain),
                margin_mean=float(margin.mean()), margin_newest=float(margin[newest].mean()),
                margin_oldest=float(margin[~newest].mean()) if (~newest).any() else None)


@click.command()
@click.option("--batches", default="8,32,64", show_default=True, help="Global batch sizes (keys enqueued per step)")
@click.option("--queues", default="65,200", show_default=True, help="Queue lengths")
@click.option("--tau_ms", default="0.01,0.001", show_default=True, help="tau_m values for forgetting_mode=paper")
@click.option("--tau", default=0.2, show_default=True, help="InfoNCE temperature")
@click.option("--pos_cos", default=0.5, show_default=True, help="Cosine of each query with its positive")
@click.option("--seed", default=0, show_default=True)
def main(batches: str, queues: str, tau_ms: str, tau: float, pos_cos: float, seed: int) -> None:
    """Print the loss change of the paper's eq. 11 and of the released code's constant."""
    rows = []
    for batch in (int(b) for b in batches.split(",")):
        for length in (int(n) for n in queues.split(",")):
            configs = [("paper", float(t)) for t in tau_ms.split(",")] + [("code_constant", 0.01)]
            for mode, tau_m in configs:
                row = measure(batch, length, mode, tau, tau_m, pos_cos, seed)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| B | queue | mode | τ_m | Δ loss (nats) | mean m_i | m_i newest batch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        tau_m = "–" if r["tau_m"] is None else f"{r['tau_m']:g}"
        print(f"| {r['batch']} | {r['queue']} | {r['mode']} | {tau_m} | {r['delta_nats']:+.3f} | "
              f"{r['margin_mean']:.4f} | {r['margin_newest']:.4f} |")


if __name__ == "__main__":
    main()

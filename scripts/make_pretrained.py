"""Turn a training snapshot into a small starting point that ships in the repo (the demo fine-tunes from it).

A snapshot written by train.py also carries the resume state (optimiser moments, queues, every rank's RNG
streams), which a fine-tuning run on other data never uses: weights-only resumes start fresh optimisers. This
keeps G, D, G_ema and the augmentation pipe, drops the rest, and records where the weights came from, so the
shipped file is a third smaller and says how it was made:

    python scripts/make_pretrained.py --snapshot=RUN/network-snapshot-000120.pkl \\
        --out=datasets/pretrained/emoji-food-tiny-32.pkl --note="how it was trained"

The output is written atomically with the snapshot digest trailer, so `--resume=<out>` verifies it on load.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: start again as `python -m scripts.make_pretrained`
    import _as_module  # scripts/ is first on the module path of a script run by path

    _as_module.rerun_as_package_module(__file__)

import os

import click

from metrics.offline_weights import sha256_of
from training.network_pickle import NETWORK_KEYS, NetworkPickleError, load_network_pkl, save_network_pkl

KEPT_KEYS = (*NETWORK_KEYS, "augment_pipe")  # what a weights-only resume reads


def strip_snapshot(data: dict, note: str) -> dict:
    """The networks of `data` and a provenance note; everything a fine-tune does not read is dropped."""
    missing = [key for key in NETWORK_KEYS if data.get(key) is None]
    if missing:
        raise click.ClickException(f"--snapshot: no {', '.join(missing)} in it; give a snapshot written by train.py")
    kept = {key: data[key] for key in KEPT_KEYS if data.get(key) is not None}
    kept["provenance"] = note
    return kept


@click.command()
@click.option("--snapshot", required=True, help="network-snapshot-*.pkl written by train.py")
@click.option("--out", required=True, help="Where the starting point goes (must not exist)")
@click.option("--note", required=True, help="How the snapshot was made (stored in the file)")
def main(snapshot: str, out: str, note: str) -> None:
    """Strip a snapshot to the weights a fine-tuning run needs."""
    if os.path.exists(out):
        raise click.ClickException(f"--out={out}: exists; give a new path (nothing is overwritten)")
    try:
        data = load_network_pkl(snapshot)
    except (FileNotFoundError, NetworkPickleError) as error:
        raise click.ClickException(f"--snapshot={snapshot}: {error}") from None
    save_network_pkl(out, strip_snapshot(data, note))  # atomic; creates the folder
    print(f"Wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB, sha256 {sha256_of(out)})")


if __name__ == "__main__":
    main()

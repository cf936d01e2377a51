"""Generate images with a trained network pickle (ours or upstream's), as upstream's generate.py does.

Examples:
  python generate.py --outdir=out --trunc=1 --seeds=85,265,297,849 --network=network-snapshot-000000.pkl
  python generate.py --outdir=out --seeds=0-35 --class=1 --grid --network=cond.pkl
  python generate.py --outdir=out --projected-w=projected_w.npz --network=net.pkl

One PNG per seed (seed0085.png), one per projected w (proj00.png), or with --grid a single grid.png.
Seed s always gives the same latent z = RandomState(s).randn(z_dim), whatever the batch size.
"""

from __future__ import annotations

import math
import os
from typing import Any

import click
import numpy as np
import torch

from dnnlib import cli_errors, util
from training import finite_checks
from training.latent_io import finite_number, pick_device, read_projected_w, require_finite, save_png, to_uint8_hwc

NOISE_MODES = ("const", "random", "none")


def make_label(G: Any, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """One-hot label for conditional networks; clear errors for a missing or superfluous --class."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise click.UsageError(f"--class={class_idx} given, but this network is unconditional; drop --class")
        return torch.zeros([1, 0], device=device)
    if class_idx is None:
        raise click.UsageError(f"this network is conditional ({G.c_dim} classes); choose one with --class=0..{G.c_dim - 1}")
    if not 0 <= class_idx < G.c_dim:
        raise click.UsageError(f"--class={class_idx} is out of range; this network has classes 0..{G.c_dim - 1}")
    label = torch.zeros([1, G.c_dim], device=device)
    label[0, class_idx] = 1
    return label


def tile_grid(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> one near-square grid, row-major, empty cells black."""
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros([rows * cols, h, w, c], dtype=np.uint8)
    canvas[:n] = images
    return canvas.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def load_projected_w(path: str, G: Any) -> torch.Tensor:
    """'w' [N, num_ws, w_dim] of a projector .npz (training.latent_io.read_projected_w: bounded, checked)."""
    if not os.path.isfile(path):
        raise click.BadParameter(f"{path}: no such file", param_hint="--projected-w")
    return read_projected_w(path, G.num_ws, G.w_dim)


def synthesize_seeds(G: Any, seeds: list[int], label: torch.Tensor, truncation_psi: float, noise_mode: str,
                     batch: int, device: torch.device, source: str = "--network") -> np.ndarray:
    """uint8 [N, H, W, C] images for the seeds, generated `batch` at a time."""
    out = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start: start + batch]
        z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in chunk])).float().to(device)
        torch.manual_seed(chunk[0])  # noise-mode=random: reproducible for the same seeds and batch
        with torch.no_grad():
            img = G(z, label.repeat(len(chunk), 1), truncation_psi=truncation_psi, noise_mode=noise_mode)
        require_finite(lambda: finite_checks.require_finite_output(img, source))
        out.append(to_uint8_hwc(img))
    return np.concatenate(out)


def synthesize_ws(G: Any, ws: torch.Tensor, noise_mode: str, batch: int, device: torch.device,
                  source: str = "--network") -> np.ndarray:
    out = []
    for start in range(0, ws.shape[0], batch):
        with torch.no_grad():
            img = G.synthesis(ws[start: start + batch].to(device), noise_mode=noise_mode)
        require_finite(lambda: finite_checks.require_finite_output(img, source))
        out.append(to_uint8_hwc(img))
    return np.concatenate(out)


def generate_images(network_pkl: str, seeds: list[int] | None, truncation_psi: float, noise_mode: str, outdir: str,
                    class_idx: int | None = None, projected_w: str | None = None, grid: bool = False,
                    batch: int = 16, device: torch.device | None = None) -> list[str]:
    """Write the PNGs; returns their paths."""
    from training.network_pickle import NetworkPickleError, load_network_pkl  # heavy import kept out of --help

    device = device or pick_device()
    print(f'Loading networks from "{network_pkl}"...')
    with cli_errors.one_line_errors(FileNotFoundError, prefix="--network=", exit_code=2), \
            cli_errors.one_line_errors(NetworkPickleError):
        G = load_network_pkl(network_pkl)["G_ema"].eval().requires_grad_(False).to(device)
    require_finite(lambda: finite_checks.require_finite_generator(G, network_pkl))
    if projected_w is not None:
        if seeds:
            print("warning: --seeds is ignored when using --projected-w")
        images = synthesize_ws(G, load_projected_w(projected_w, G), noise_mode, batch, device, network_pkl)
        names = [f"proj{i:02d}.png" for i in range(len(images))]
    else:
        if not seeds:
            raise click.UsageError("give --seeds (e.g. --seeds=0-9,20) or --projected-w")
        label = make_label(G, class_idx, device)
        images = synthesize_seeds(G, seeds, label, truncation_psi, noise_mode, batch, device, network_pkl)
        names = [f"seed{s:04d}.png" for s in seeds]
    os.makedirs(outdir, exist_ok=True)
    if grid:
        path = os.path.join(outdir, "grid.png")
        save_png(tile_grid(images), path)
        return [path]
    paths = [os.path.join(outdir, name) for name in names]
    for array, path in zip(images, paths):
        save_png(array, path)
    return paths


def _parse_seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return util.parse_range_list(value, option="--seeds")
    except ValueError as err:
        raise click.BadParameter(str(err).removeprefix("--seeds: ")) from None


@click.command()
@click.option("--network", "network_pkl", help="Network pickle filename or URL", required=True,
              callback=cli_errors.expand_user)
@click.option("--seeds", callback=_parse_seeds, help="List of random seeds, e.g. 0-9,20,30-35")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, callback=finite_number,
              help="Truncation psi")
@click.option("--class", "class_idx", type=int, help="Class label (required for conditional networks)")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True, help="Noise mode")
@click.option("--projected-w", type=str, metavar="FILE", help="Projection result file (.npz with 'w')")
@click.option("--outdir", type=str, required=True, metavar="DIR", help="Where to save the output images",
              callback=cli_errors.expand_user)
@click.option("--grid", is_flag=True, help="Write all images as one grid.png instead of one PNG each")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per forward pass")
def main(network_pkl: str, seeds: list[int] | None, truncation_psi: float, class_idx: int | None, noise_mode: str,
         projected_w: str | None, outdir: str, grid: bool, batch: int) -> None:
    """Generate images using a pretrained network pickle."""
    with cli_errors.one_line_errors(OSError):  # the loader reports its own; what is left is writing --outdir
        paths = generate_images(network_pkl, seeds, truncation_psi, noise_mode, outdir, class_idx, projected_w, grid, batch)
    print(f"Wrote {len(paths)} file(s) to {outdir}")


if __name__ == "__main__":
    main()

"""Style mixing: the coarse styles of one latent with chosen layers' styles from another, as upstream's script.

Examples:
  python style_mixing.py --network=network-snapshot-000000.pkl --rows=85,100,75 --cols=55,821,1789 --outdir=out
  python style_mixing.py --network=net.pkl --rows=0-3 --cols=10-13 --styles=4-7 --trunc=0.7 --outdir=out

Cell (row seed r, column seed c) is synthesised from w(r) with the layers in --styles replaced by w(c).
Writes one PNG per cell (<r>-<c>.png) plus, for every seed, its own image (<s>-<s>.png), and grid.png:
column seeds' images across the top, row seeds' images down the left, the mixes inside, the top-left cell
black. Latents: z = RandomState(seed).randn(z_dim), truncated towards w_avg by --trunc.
"""

from __future__ import annotations

import os
from typing import Any

import click
import numpy as np
import torch

from dnnlib import util
from training import finite_checks
from training.latent_io import (check_outdir, finite_number, load_generator, output_errors, pick_device, require_finite,
                                require_unconditional, save_png, to_uint8_hwc)

NOISE_MODES = ("const", "random", "none")
DEFAULT_STYLES = range(7)  # upstream's 0-6: the coarse and middle layers of a 1024 px network


def seed_ws(G: Any, seeds: list[int], truncation_psi: float, device: torch.device) -> dict[int, torch.Tensor]:
    """{seed: w [num_ws, w_dim]} with truncation towards w_avg."""
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).float().to(device)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=truncation_psi)
    return dict(zip(seeds, ws))


def mix(w_row: torch.Tensor, w_col: torch.Tensor, styles: list[int]) -> torch.Tensor:
    """w_row with the layers in `styles` taken from w_col."""
    mixed = w_row.clone()
    mixed[styles] = w_col[styles]
    return mixed


Cells = dict[tuple[int, int], np.ndarray]  # (row seed, col seed) -> uint8 [H, W, C]


def style_mixing_images(G: Any, row_seeds: list[int], col_seeds: list[int], styles: list[int],
                        truncation_psi: float, noise_mode: str, device: torch.device,
                        source: str = "--network") -> Cells:
    """{(row seed, col seed): uint8 [H, W, C]}; (s, s) is seed s unmixed."""
    seeds = list(dict.fromkeys(row_seeds + col_seeds))
    ws = seed_ws(G, seeds, truncation_psi, device)
    keys = [(s, s) for s in seeds] + [(r, c) for r in row_seeds for c in col_seeds if r != c]
    batch = torch.stack([mix(ws[r], ws[c], styles) for r, c in keys])
    images = []
    for start in range(0, len(keys), 16):
        with torch.no_grad():
            img = G.synthesis(batch[start: start + 16], noise_mode=noise_mode)
        require_finite(lambda: finite_checks.require_finite_output(img, source))
        images.append(to_uint8_hwc(img))
    return dict(zip(keys, np.concatenate(images)))


def mixing_grid(images: Cells, row_seeds: list[int], col_seeds: list[int]) -> np.ndarray:
    """(rows + 1) x (cols + 1) cells: column seeds on top, row seeds on the left, mixes inside, corner black."""
    h, w, c = next(iter(images.values())).shape
    canvas = np.zeros([h * (len(row_seeds) + 1), w * (len(col_seeds) + 1), c], dtype=np.uint8)
    for j, col in enumerate(col_seeds):
        canvas[:h, w * (j + 1): w * (j + 2)] = images[(col, col)]
    for i, row in enumerate(row_seeds):
        canvas[h * (i + 1): h * (i + 2), :w] = images[(row, row)]
        for j, col in enumerate(col_seeds):
            canvas[h * (i + 1): h * (i + 2), w * (j + 1): w * (j + 2)] = images[(row, col)]
    return canvas


def resolve_styles(styles: list[int] | None, num_ws: int) -> list[int]:
    """The default 0-6 keeps the layers a small network has; explicit layers must exist."""
    if styles is None:
        return [s for s in DEFAULT_STYLES if s < num_ws]
    bad = [s for s in styles if not 0 <= s < num_ws]
    if bad:
        raise click.ClickException(f"--styles: layer(s) {', '.join(map(str, bad))} out of range; this network has "
                                   f"layers 0-{num_ws - 1}")
    return styles


def generate_style_mix(network_pkl: str, row_seeds: list[int], col_seeds: list[int], styles: list[int] | None,
                       truncation_psi: float, noise_mode: str, outdir: str,
                       device: torch.device | None = None) -> list[str]:
    """Write the cell PNGs and grid.png; returns their paths."""
    check_outdir(outdir)  # before the networks load and the images are made
    device = device or pick_device()
    print(f'Loading networks from "{network_pkl}"...')
    G = load_generator(network_pkl, device)
    require_unconditional(G, network_pkl, "style mixing")
    styles = resolve_styles(styles, G.num_ws)
    print("Generating images...")
    images = style_mixing_images(G, row_seeds, col_seeds, styles, truncation_psi, noise_mode, device, network_pkl)
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for (row, col), array in images.items():
        paths.append(os.path.join(outdir, f"{row}-{col}.png"))
        save_png(array, paths[-1])
    paths.append(os.path.join(outdir, "grid.png"))
    save_png(mixing_grid(images, row_seeds, col_seeds), paths[-1])
    return paths


def _range_list(option: str):
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
        if value is None:
            return None
        try:
            return util.parse_range_list(value, option=option)
        except ValueError as err:
            raise click.BadParameter(str(err).removeprefix(f"{option}: ")) from None
    return parse


@click.command()
@click.option("--network", "network_pkl", help="Network pickle filename", required=True)
@click.option("--rows", "row_seeds", callback=_range_list("--rows"), required=True,
              help="Random seeds to use for image rows, e.g. 85,100,75 or 0-3")
@click.option("--cols", "col_seeds", callback=_range_list("--cols"), required=True,
              help="Random seeds to use for image columns")
@click.option("--styles", "col_styles", callback=_range_list("--styles"),
              help="Style layers taken from the column seeds  [default: 0-6, or those the network has]")
@click.option("--trunc", "truncation_psi", type=float, default=1, show_default=True, callback=finite_number,
              help="Truncation psi")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True, help="Noise mode")
@click.option("--outdir", type=str, required=True, metavar="DIR", help="Where to save the output images")
def main(network_pkl: str, row_seeds: list[int], col_seeds: list[int], col_styles: list[int] | None,
         truncation_psi: float, noise_mode: str, outdir: str) -> None:
    """Generate a style-mixing grid from a pretrained network pickle."""
    with output_errors():
        paths = generate_style_mix(network_pkl, row_seeds, col_seeds, col_styles, truncation_psi, noise_mode, outdir)
    print(f"Wrote {len(paths)} file(s) to {outdir}")


if __name__ == "__main__":
    main()

"""style_mixing.py: the grid layout of upstream and mixed cells equal to a hand-made synthesis."""

from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

import style_mixing
from latent_helpers import save_tiny_generator

ROWS, COLS, RES = [3, 7], [10, 11, 12], 16


def _synth(G, ws: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        img = G.synthesis(ws[None], noise_mode="const")
    return (img[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()


def _w(G, seed: int) -> torch.Tensor:
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None)[0]


def test_grid_cells_and_mixes(tmp_path):
    G = save_tiny_generator(tmp_path / "net.pkl", res=RES)
    args = [f"--network={tmp_path / 'net.pkl'}", "--rows=3,7", "--cols=10-12", "--styles=0-2",
            f"--outdir={tmp_path / 'out'}"]
    result = CliRunner().invoke(style_mixing.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"grid.png"} | {f"{s}-{s}.png" for s in ROWS + COLS} | {f"{r}-{c}.png" for r in ROWS for c in COLS}
    grid = np.asarray(Image.open(tmp_path / "out" / "grid.png"))
    assert grid.shape == ((len(ROWS) + 1) * RES, (len(COLS) + 1) * RES, 3)
    cell = lambda i, j: grid[i * RES: (i + 1) * RES, j * RES: (j + 1) * RES]  # noqa: E731
    assert (cell(0, 0) == 0).all()  # the empty corner
    for j, col in enumerate(COLS):
        np.testing.assert_array_equal(cell(0, j + 1), _synth(G, _w(G, col)))  # column seeds across the top
    for i, row in enumerate(ROWS):
        np.testing.assert_array_equal(cell(i + 1, 0), _synth(G, _w(G, row)))  # row seeds down the left
        for j, col in enumerate(COLS):
            mixed = _w(G, row).clone()
            mixed[0:3] = _w(G, col)[0:3]  # the coarse layers 0-2 from the column seed
            np.testing.assert_array_equal(cell(i + 1, j + 1), _synth(G, mixed))
            cell_png = np.asarray(Image.open(tmp_path / "out" / f"{row}-{col}.png"))
            np.testing.assert_array_equal(cell_png, cell(i + 1, j + 1))
    assert not np.array_equal(cell(1, 1), cell(1, 0)) and not np.array_equal(cell(1, 1), cell(0, 1))


def test_default_styles_fit_a_small_network_and_bad_styles_are_rejected(tmp_path):
    G = save_tiny_generator(tmp_path / "net.pkl", res=RES)
    assert style_mixing.resolve_styles(None, G.num_ws) == list(range(min(7, G.num_ws)))
    result = CliRunner().invoke(style_mixing.main, [f"--network={tmp_path / 'net.pkl'}", "--rows=1", "--cols=2",
                                                    f"--styles=0-{G.num_ws}", f"--outdir={tmp_path / 'out'}"])
    assert result.exit_code == 1 and f"Error: --styles: layer(s) {G.num_ws} out of range" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(style_mixing.main, [f"--network={tmp_path / 'net.pkl'}", "--rows=1-x", "--cols=2",
                                                    f"--outdir={tmp_path / 'out'}"])
    assert result.exit_code == 2 and "--rows" in result.output


def test_an_unwritable_outdir_is_one_line(tmp_path):
    save_tiny_generator(tmp_path / "net.pkl", res=RES)
    (tmp_path / "file").write_text("in the way")
    result = CliRunner().invoke(style_mixing.main, [f"--network={tmp_path / 'net.pkl'}", "--rows=1", "--cols=2",
                                                    f"--outdir={tmp_path / 'file'}"])
    assert result.exit_code == 1 and result.output.splitlines() == [  # checked before the network even loads
        f"Error: --outdir={tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a directory; choose another --outdir"]

"""generate.py: files written, seeds reproducible, grid and projected-w outputs, clear option errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import generate
from training.network_pickle import save_network_pkl
from training.networks import Generator


def _save_generator(path, c_dim=0, res=16):
    torch.manual_seed(1)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    save_network_pkl(str(path), dict(G_ema=G, training_set_kwargs=None))
    return G


@pytest.fixture(scope="module")
def uncond_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "uncond.pkl"
    return str(path), _save_generator(path)


@pytest.fixture(scope="module")
def cond_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "cond.pkl"
    return str(path), _save_generator(path, c_dim=3)


def _run(*args):
    return CliRunner().invoke(generate.main, list(args), catch_exceptions=False)


def _png(path):
    return np.asarray(Image.open(path))


def test_writes_one_png_per_seed_matching_the_network(uncond_pkl, tmp_path):
    pkl, G = uncond_pkl
    result = _run(f"--network={pkl}", "--seeds=0-2,5", f"--outdir={tmp_path}", "--batch=3")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0005.png"]
    img = _png(tmp_path / "seed0005.png")
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 8)).float()
    with torch.no_grad():
        expected = (G(z, None, noise_mode="const").permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    np.testing.assert_array_equal(img, expected[0].numpy())


def test_same_seed_same_image_whatever_the_batch(uncond_pkl, tmp_path):
    pkl, _ = uncond_pkl
    _run(f"--network={pkl}", "--seeds=3,7", f"--outdir={tmp_path / 'a'}", "--batch=1")
    _run(f"--network={pkl}", "--seeds=7", f"--outdir={tmp_path / 'b'}", "--batch=8", "--trunc=1")
    np.testing.assert_array_equal(_png(tmp_path / "a" / "seed0007.png"), _png(tmp_path / "b" / "seed0007.png"))
    assert not np.array_equal(_png(tmp_path / "a" / "seed0003.png"), _png(tmp_path / "a" / "seed0007.png"))


def test_grid_writes_a_single_tiled_png(uncond_pkl, tmp_path):
    pkl, _ = uncond_pkl
    _run(f"--network={pkl}", "--seeds=0-4", f"--outdir={tmp_path / 'g'}", "--grid")
    _run(f"--network={pkl}", "--seeds=0-4", f"--outdir={tmp_path / 's'}")
    assert [p.name for p in (tmp_path / "g").iterdir()] == ["grid.png"]
    grid = _png(tmp_path / "g" / "grid.png")
    assert grid.shape == (2 * 16, 3 * 16, 3)  # 5 images: 3 columns, 2 rows
    np.testing.assert_array_equal(grid[16:32, 0:16], _png(tmp_path / "s" / "seed0003.png"))
    assert (grid[16:32, 32:48] == 0).all()  # the unused cell stays black


def test_projected_w(uncond_pkl, tmp_path):
    pkl, G = uncond_pkl
    ws = np.random.RandomState(0).randn(2, G.num_ws, G.w_dim).astype(np.float32)
    np.savez(tmp_path / "w.npz", w=ws)
    result = _run(f"--network={pkl}", f"--projected-w={tmp_path / 'w.npz'}", f"--outdir={tmp_path / 'out'}")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["proj00.png", "proj01.png"]
    np.savez(tmp_path / "bad.npz", w=ws[:, :1])
    result = CliRunner().invoke(generate.main, [f"--network={pkl}", f"--projected-w={tmp_path / 'bad.npz'}",
                                                f"--outdir={tmp_path / 'out2'}"])
    assert result.exit_code == 2 and "--projected-w" in result.output and "needs [N," in result.output


@pytest.mark.parametrize("seeds, message", [("0-x", "cannot parse '0-x'"), ("5-2", "reversed"), ("", "empty")])
def test_bad_seeds_are_rejected(uncond_pkl, tmp_path, seeds, message):
    pkl, _ = uncond_pkl
    result = CliRunner().invoke(generate.main, [f"--network={pkl}", f"--seeds={seeds}", f"--outdir={tmp_path}"])
    assert result.exit_code == 2
    assert "--seeds" in result.output and message in result.output
    assert not list(tmp_path.iterdir())


def test_class_rules(uncond_pkl, cond_pkl, tmp_path):
    cases = [
        (cond_pkl[0], [], "this network is conditional (3 classes); choose one with --class=0..2"),
        (cond_pkl[0], ["--class=3"], "--class=3 is out of range"),
        (uncond_pkl[0], ["--class=1"], "network is unconditional; drop --class"),
    ]
    for pkl, extra, message in cases:
        result = CliRunner().invoke(generate.main, [f"--network={pkl}", "--seeds=0", f"--outdir={tmp_path}", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    assert _run(f"--network={cond_pkl[0]}", "--seeds=0", f"--outdir={tmp_path}", "--class=2").exit_code == 0
    assert (tmp_path / "seed0000.png").is_file()


def test_missing_network_names_the_option(tmp_path):
    result = CliRunner().invoke(generate.main, [f"--network={tmp_path / 'nope.pkl'}", "--seeds=0", f"--outdir={tmp_path}"])
    assert result.exit_code == 2 and "--network" in result.output and "nope.pkl" in result.output

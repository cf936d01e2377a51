"""projector.py: the projection recovers a known image, and projected_w.npz round-trips through generate.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import generate
import projector
from latent_helpers import random_vgg16, save_tiny_generator, tiny_generator
from metrics import detectors
from training.inversion import (ProjectionOptions, learning_rate, noise_buffers, project, vgg_input, w_noise_scale,
                                 w_statistics)


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def test_projection_recovers_an_image_of_a_known_w():
    G, vgg = tiny_generator(res=16), random_vgg16()
    with torch.no_grad():
        w_known = G.mapping(torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float(), None)
        target = _uint8(G.synthesis(w_known, noise_mode="const"))[0]
    noise_before = {k: v.clone() for k, v in noise_buffers(G).items()}
    result = project(G, target, vgg, ProjectionOptions(num_steps=40))
    assert result.w_steps.shape == (40, G.w_dim) and result.ws().shape == (1, G.num_ws, G.w_dim)
    assert all(torch.equal(v, noise_before[k]) for k, v in noise_buffers(G).items())  # the caller's G is untouched

    def errors(ws: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            img = _uint8(G.synthesis(ws, noise_mode="const")).float()
            lpips = float(vgg.lpips(img, target[None].float()))
        return lpips, float((img / 255 - target.float() / 255).square().mean())

    w_avg, _ = w_statistics(G, 10000, torch.device("cpu"))
    lpips_avg, mse_avg = errors(w_avg.repeat(1, G.num_ws, 1))
    lpips_proj, mse_proj = errors(result.ws())
    # Measured: LPIPS 0.004 vs 0.69, MSE 0.00016 vs 0.050 (40 steps).
    assert lpips_proj < 0.05 * lpips_avg and mse_proj < 0.05 * mse_avg, (lpips_proj, lpips_avg, mse_proj, mse_avg)


def test_schedules_follow_upstream():
    opts = ProjectionOptions()
    assert learning_rate(0.0, opts) == 0 and learning_rate(0.05, opts) == pytest.approx(0.1)
    assert learning_rate(0.5, opts) == pytest.approx(0.1) and learning_rate(0.875, opts) == pytest.approx(0.05)
    assert w_noise_scale(0.0, 2.0, opts) == pytest.approx(0.1)
    assert w_noise_scale(0.375, 2.0, opts) == pytest.approx(0.1 * 0.25)  # (1 - 0.5)^2
    assert w_noise_scale(0.8, 2.0, opts) == 0


def test_vgg_input_pools_large_images_to_256():
    assert vgg_input(torch.zeros(1, 3, 512, 512)).shape == (1, 3, 256, 256)
    assert vgg_input(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)


@pytest.fixture
def projected(tmp_path, monkeypatch):
    """A projector.py run on a tiny network (random VGG16, no video writer)."""
    monkeypatch.setattr(detectors, "get_vgg16", lambda device=None, source=None: random_vgg16())
    monkeypatch.setitem(sys.modules, "imageio", None)  # import fails: the PNG strip instead of proj.mp4
    pkl = tmp_path / "net.pkl"
    G = save_tiny_generator(pkl, res=16)
    Image.fromarray(np.random.RandomState(0).randint(0, 256, [40, 30, 3], dtype=np.uint8)).save(tmp_path / "t.png")
    args = [f"--network={pkl}", f"--target={tmp_path / 't.png'}", f"--outdir={tmp_path / 'out'}", "--num-steps=12"]
    result = CliRunner().invoke(projector.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return pkl, G, tmp_path / "out", result.output


def test_projector_writes_upstream_outputs_and_a_strip_without_video_writer(projected):
    _, G, out, output = projected
    assert sorted(p.name for p in out.iterdir()) == ["proj.png", "proj_steps.png", "projected_w.npz", "target.png"]
    assert "No video writer" in output and "12/12 steps" in output
    with np.load(out / "projected_w.npz") as data:
        assert data["w"].shape == (1, G.num_ws, G.w_dim) and data["w"].dtype == np.float32
    assert np.asarray(Image.open(out / "target.png")).shape == (16, 16, 3)  # centre crop 30x30, resized
    assert np.asarray(Image.open(out / "proj_steps.png")).shape == (16, 16 * 11, 3)  # target + 10 steps


def test_projected_w_round_trips_through_generate(projected):
    pkl, _, out, _ = projected
    result = CliRunner().invoke(generate.main, [f"--network={pkl}", f"--projected-w={out / 'projected_w.npz'}",
                                                f"--outdir={out / 'gen'}", "--seeds=1,2"], catch_exceptions=False)
    assert result.exit_code == 0 and "--seeds is ignored" in result.output
    assert [p.name for p in (out / "gen").iterdir()] == ["proj00.png"]
    again, original = (np.asarray(Image.open(path)) for path in (out / "gen" / "proj00.png", out / "proj.png"))
    np.testing.assert_array_equal(again, original)


def test_projector_option_errors(tmp_path):
    pkl = tmp_path / "net.pkl"
    save_tiny_generator(pkl)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    cases = [([f"--network={tmp_path / 'nope.pkl'}", f"--target={tmp_path / 'bad.png'}"], "--network=", "no such file"),
             ([f"--network={pkl}", f"--target={tmp_path / 'bad.png'}"], "--target=", "cannot read the image")]
    for args, option, message in cases:
        result = CliRunner().invoke(projector.main, [*args, f"--outdir={tmp_path / 'out'}"])
        assert result.exit_code == 1 and result.output.startswith(f"Error: {option}") and message in result.output
        assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_outdir_and_vgg16_are_checked_before_the_optimisation(tmp_path, monkeypatch):
    pkl = tmp_path / "net.pkl"
    save_tiny_generator(pkl, res=16)
    Image.fromarray(np.zeros([16, 16, 3], dtype=np.uint8)).save(tmp_path / "t.png")
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "text.pkl").write_text("not weights")
    asked = []
    monkeypatch.setattr(detectors, "get_vgg16", lambda device=None, source=None: asked.append(source) or random_vgg16())
    base = [f"--network={pkl}", f"--target={tmp_path / 't.png'}", "--num-steps=2", "--save-video=false"]
    result = CliRunner().invoke(projector.main, [*base, f"--outdir={tmp_path / 'file'}"])
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"Error: --outdir={tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a directory; choose another --outdir"]
    assert asked == []  # nothing loaded, nothing optimised
    result = CliRunner().invoke(projector.main, [*base, f"--outdir={tmp_path / 'out'}", "--vgg16=mine.pkl"])
    assert result.exit_code == 0 and asked == ["mine.pkl"], result.output
    monkeypatch.undo()
    for bad, message in ((tmp_path / "missing.pkl", "no such file"), (tmp_path / "text.pkl", "not a weight file")):
        result = CliRunner().invoke(projector.main, [*base, f"--outdir={tmp_path / 'out2'}", f"--vgg16={bad}"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].startswith(f"Error: VGG16: {bad}: {message}"), result.output
        assert not (tmp_path / "out2").exists()

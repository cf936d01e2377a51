"""Latent-continuity report: the interpolation metric finds known jumps, PPL mean/std match a hand computation,
and the script writes the four report files for two networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latent_helpers import ConstructedGenerator, random_vgg16, save_tiny_generator, write_image_folder
from metrics import detectors
from metrics.features import MetricOptions
from metrics.interpolation import measure_smoothness
from metrics.perceptual_path_length import compute_ppl_distances, trimmed_mean_std
from scripts import latent_continuity

K = 8  # interpolation steps
# Two pairs whose first coordinate crosses 0 between frames (never on one): -1 -> 2 and 1.5 -> -0.5.
Z0 = torch.tensor([[-1.0, 0.5, 0.0, 0.0], [1.5, -0.3, 0.2, 0.0]])
Z1 = torch.tensor([[2.0, 0.5, 0.0, 0.0], [-0.5, 0.4, 0.1, 0.0]])


@pytest.mark.parametrize("space", ["z", "w"])
def test_a_step_generator_has_exactly_one_jump_per_pair(space):
    smoothness, frames = measure_smoothness(ConstructedGenerator("step"), Z0, Z1, K, space)
    assert smoothness.diffs.shape == (2, K) and frames.shape == (K + 1, 3, 8, 8)
    np.testing.assert_array_equal(np.sort(smoothness.diffs, axis=1)[:, -1], [1.0, 1.0])  # black <-> white
    assert (np.sort(smoothness.diffs, axis=1)[:, :-1] == 0).all()
    summary = smoothness.summary()
    assert summary["jumps"] == 2 and summary["jump_fraction"] == pytest.approx(1 / K)
    assert summary["max"] == 1.0 and summary["mean"] == pytest.approx(1 / K)


def test_a_linear_generator_is_smooth_with_the_hand_computed_step():
    smoothness, _ = measure_smoothness(ConstructedGenerator("linear", gain=0.25), Z0, Z1, K, "w")
    # pixel = (0.25 * w0 + 1) / 2 and w0 moves by |z1 - z0| / K per step (lerp in W).
    expected = 0.125 * (Z1[:, 0] - Z0[:, 0]).abs().numpy() / K
    np.testing.assert_allclose(smoothness.diffs, np.repeat(expected[:, None], K, axis=1), rtol=1e-5)
    assert smoothness.summary()["jumps"] == 0 and smoothness.summary()["jump_fraction"] == 0
    z_summary = measure_smoothness(ConstructedGenerator("linear"), Z0, Z1, K, "z")[0].summary()
    assert z_summary["jumps"] == 0 and 0 < z_summary["max"] < 0.2


def test_ppl_mean_and_std_equal_a_hand_computation(tmp_path):
    gain, eps, n, batch, seed = 0.5, 0.1, 256, 64, 7  # the path is linear: any epsilon gives the same length
    opts = MetricOptions(G=ConstructedGenerator("linear", gain=gain), progress=False,
                         dataset_kwargs=dict(path=str(write_image_folder(tmp_path / "data", 2, 8))))
    squared = lambda a, b: (a - b).square().mean(dim=(1, 2, 3))  # noqa: E731  (a stand-in for LPIPS)
    dists = compute_ppl_distances(opts, squared, n, eps, "w", "full", crop=False, batch_size=batch, seed=seed)

    generator = torch.Generator().manual_seed(seed)  # the same draws: per batch t, then z0 and z1
    hand = []
    for _ in range(n // batch):
        torch.rand([batch, 1], generator=generator)
        z0, z1 = torch.randn([2 * batch, 4], generator=generator).chunk(2)
        # image = gain * w0 in every pixel, scaled by 127.5; w0 moves eps * (z1 - z0) along the W line.
        hand.append(((127.5 * gain * (z1[:, 0] - z0[:, 0]).double()) ** 2).numpy())
    hand = np.concatenate(hand)
    np.testing.assert_allclose(dists, hand, rtol=1e-3, atol=1e-2)  # float32 images
    kept = np.sort(hand)[2:-2]  # of 256 values the 1st percentile ('lower') is the 3rd smallest, the 99th 3rd largest
    mean, std = trimmed_mean_std(dists)
    assert mean == pytest.approx(kept.mean(), rel=1e-4) and std == pytest.approx(kept.std(), rel=1e-4)


@pytest.fixture(scope="module")
def two_networks(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuity")
    save_tiny_generator(root / "a.pkl", res=32, seed=1)
    save_tiny_generator(root / "b.pkl", res=32, seed=2)
    return root, write_image_folder(root / "data", 3, 32)


def test_report_files_for_two_networks(two_networks, tmp_path, monkeypatch):
    root, data = two_networks
    monkeypatch.setattr(detectors, "get_vgg16", lambda device=None, source=None: random_vgg16())
    args = [f"--network={root / 'a.pkl'}", f"--network={root / 'b.pkl'}", "--label=ada", "--label=fakeclr",
            f"--data={data}", f"--outdir={tmp_path}", "--pairs=2", "--steps=3", "--ppl-samples=8", "--invert=2",
            "--proj-steps=3", "--device=cpu"]
    result = CliRunner().invoke(latent_continuity.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpolation.png", "inversion.png", "report.json",
                                                          "report.md"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [n["label"] for n in report["networks"]] == ["ada", "fakeclr"]
    for net in report["networks"]:
        assert net["smoothness"]["z"]["steps"] == 2 * 3 and 0 <= net["smoothness"]["w"]["max"] <= 1
        assert net["ppl"]["z"]["std"] >= 0 and net["ppl"]["w"]["samples"] == 8 and net["ppl"]["w"]["crop"]
        assert net["inversion"]["images"] == 2 and len(net["inversion"]["per_image"]) == 2
        assert net["inversion"]["mse"]["mean"] > 0
    assert report["networks"][0]["smoothness"] != report["networks"][1]["smoothness"]
    markdown = (tmp_path / "report.md").read_text()
    assert "| ada |" in markdown and "| fakeclr |" in markdown and "PPL W" in markdown
    # Fig. 1 layout: 4 frames of 64 px (32 px enlarged) plus half a thumbnail; one block per network.
    assert Image.open(tmp_path / "interpolation.png").size == (4 * 64 + 32, 2 * (14 + 64 + 4 + 32 + 14 + 8))
    assert Image.open(tmp_path / "inversion.png").size == (3 * 64, 14 + 2 * 64)  # target | ada | fakeclr
    assert result.output.count("3/3 steps (100.0%)") == 4  # each projection reports its steps (2 images x 2 networks)


@pytest.mark.parametrize("extra, message", [
    (["--label=only-one"], "--label: 1 label(s) for 2 network(s)"),
    (["--label=x", "--label=x"], "--label: a label is used twice"),
])
def test_report_option_errors(two_networks, tmp_path, extra, message):
    root, data = two_networks
    args = [f"--network={root / 'a.pkl'}", f"--network={root / 'b.pkl'}", f"--data={data}",
            f"--outdir={tmp_path / 'o'}", *extra]
    result = CliRunner().invoke(latent_continuity.main, args)
    assert result.exit_code == 1 and f"Error: {message}" in result.output
    assert not (tmp_path / "o").exists()


def test_report_rejects_data_of_another_resolution(two_networks, tmp_path):
    root, _ = two_networks
    data = write_image_folder(tmp_path / "small", 2, 16)
    result = CliRunner().invoke(latent_continuity.main, [f"--network={root / 'a.pkl'}", f"--data={data}",
                                                         f"--outdir={tmp_path / 'o'}"])
    assert result.exit_code == 1 and "images are 16 px" in result.output and "makes 32 px" in result.output


def test_vgg16_option_and_outdir_are_checked_before_any_measurement(two_networks, tmp_path, monkeypatch):
    root, data = two_networks
    asked = []
    monkeypatch.setattr(detectors, "get_vgg16", lambda device=None, source=None: asked.append(source) or random_vgg16())
    (tmp_path / "file").write_text("in the way")
    base = [f"--network={root / 'a.pkl'}", f"--data={data}", "--pairs=1", "--steps=2", "--ppl-samples=0",
            "--invert=0", "--device=cpu"]
    result = CliRunner().invoke(latent_continuity.main, [*base, f"--outdir={tmp_path / 'file'}"])
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"Error: --outdir={tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a directory; choose another --outdir"]
    result = CliRunner().invoke(latent_continuity.main, [*base, f"--outdir={tmp_path / 'o'}", "--vgg16=mine.pkl"])
    assert result.exit_code == 0 and asked == ["mine.pkl"], result.output

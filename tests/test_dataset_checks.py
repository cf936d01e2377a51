"""Datasets are checked in full before train.py writes anything: every image readable, of one size and mode,
at least 4 px, no FIFO or device files; labels in range and finite (train.py and dataset_tool.py)."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import PIL.Image
import pytest

from train_helpers import invoke
from train_helpers import one_torch_thread  # noqa: F401 (fixture)
from training import preflight
from training.config import ConfigError
from training.dataset import ImageFolderDataset

NUM_IMAGES = 40
# preflight's sample (first, last, 16 spread) is 0, 2, 5, 7, 10, 13, ...: image 11 is never decoded by it.
OUTSIDE_SAMPLE = 11


def _folder(tmp_path: pathlib.Path, labels: list | None = None, size: int = 16) -> pathlib.Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(NUM_IMAGES):
        PIL.Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    if labels is not None:
        entries = [[f"img{i:03d}.png", labels[i % len(labels)]] for i in range(NUM_IMAGES)]
        (folder / "dataset.json").write_text(json.dumps({"labels": entries}))
    return folder


def _spoil(folder: pathlib.Path, how: str) -> str:
    """Make image OUTSIDE_SAMPLE bad in the way `how` says; returns its file name."""
    name = f"img{OUTSIDE_SAMPLE:03d}.png"
    path = folder / name
    if how == "other size":
        PIL.Image.new("RGB", (8, 8)).save(path)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "flipped byte":  # inside the compressed pixel data: only its chunk's CRC tells
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "transparent palette":
        image = PIL.Image.new("P", (16, 16))
        image.save(path, transparency=0)
    elif how == "16-bit":
        PIL.Image.fromarray(np.zeros((16, 16), dtype=np.uint16)).save(path)
    return name


@pytest.mark.parametrize("how, words", [
    ("other size", "has shape [3, 8, 8] (CHW) but the first image has [3, 16, 16]"),
    ("truncated", "cannot decode img011.png"),
    ("fifo", "img011.png is a FIFO (named pipe), not an image file; remove it"),
    ("transparent palette", "img011.png has transparency (mode P); rebuild the dataset with dataset_tool.py --convert=rgb"),
    ("16-bit", "img011.png is mode I;16"),
])
def test_a_bad_image_outside_the_sample_is_refused_before_the_run_dir_exists(tmp_path, how, words):
    folder = _folder(tmp_path)
    _spoil(folder, how)
    outdir = tmp_path / "runs"
    for dry_run in (["-n"], []):  # a FIFO would block the reader forever: this returning is the test too
        result = invoke(f"--outdir={outdir}", f"--data={folder}", "--cfg=tiny", "--metrics=none", *dry_run)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(errors) == 1, result.output
        assert errors[0].startswith(f"Error: --data={folder}: ") and words in errors[0], errors
        assert "Traceback" not in result.output and not outdir.exists()


@pytest.mark.parametrize("how", ["other size", "truncated", "flipped byte"])
def test_big_datasets_get_every_header_and_png_checksum_read(tmp_path, monkeypatch, how):
    """Above FULL_DECODE_PIXELS the check reads headers and PNG chunk checksums instead of decoding."""
    monkeypatch.setattr(preflight, "FULL_DECODE_PIXELS", 0)
    folder = _folder(tmp_path)
    name = _spoil(folder, how)
    with pytest.raises(ConfigError, match=f"--data={folder}: .*{name}"):
        preflight.check_dataset(str(folder))


def test_a_clean_dataset_passes_both_ways_and_a_slow_check_shows_progress(tmp_path, monkeypatch, capsys):
    folder = _folder(tmp_path)
    preflight.check_dataset(str(folder))
    assert capsys.readouterr().err == ""  # fast: no progress line
    monkeypatch.setattr(preflight, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(preflight, "FULL_DECODE_PIXELS", 0)
    preflight.check_dataset(str(folder))
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"{NUM_IMAGES}/{NUM_IMAGES} images checked")


def test_palette_images_train_on_their_colours_not_their_indices(tmp_path):
    folder = tmp_path / "pal"
    folder.mkdir()
    image = PIL.Image.new("P", (8, 8))
    image.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    image.putpixel((3, 2), 1)
    image.save(folder / "a.png")
    dataset = ImageFolderDataset(str(folder))
    pixels, _ = dataset[0]
    assert dataset.image_shape == [3, 8, 8]
    assert pixels[:, 2, 3].tolist() == [200, 10, 30] and pixels[:, 0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("size", [1, 2])
def test_images_smaller_than_4_px_are_refused(tmp_path, size):
    folder = tmp_path / "tiny"
    folder.mkdir()
    PIL.Image.new("RGB", (size, size)).save(folder / "a.png")
    with pytest.raises(ValueError, match=f"images are {size}x{size}; training needs square power-of-two images of "
                                         f"at least 4x4"):
        ImageFolderDataset(str(folder))


def test_8192_px_with_a_cfg_that_has_no_channels_there_is_one_line(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    PIL.Image.new("L", (8192, 8192)).save(folder / "a.png")
    outdir = tmp_path / "runs"
    for dry_run in (["-n"], []):
        result = invoke(f"--outdir={outdir}", f"--data={folder}", "--cfg=tiny", "--metrics=none", *dry_run)
        assert result.exit_code == 1 and not outdir.exists(), result.output
        assert result.output.strip().splitlines()[-1] == (
            "Error: --cfg=tiny: its networks have no channels left at 8192x8192 (channel base 4096); use --cfg=auto, "
            "or a dataset of at most 4096x4096 (dataset_tool.py --resolution)")


# ----------------------------------------------------------------------------
# Labels.

BAD_LABELS = [  # (labels, what the one line says)
    ([0, 10 ** 9], "class index 1000000000 is not in 0..65535"),  # one-hot over 1e9 classes: 256 GB of weights
    ([0, 10 ** 30], "class index 1000000000...(31 digits) is not in 0..65535"),  # OverflowError before
    ([[0.5, 1.0], [float("nan"), 0.0]], "the label vector holds nan, which is not a finite number"),
    ([[0.5, 1.0], [float("inf"), 0.0]], "the label vector holds inf, which is not a finite number"),
    ([[0.5, 1.0], [0.0, 1e300]], "the label vector holds 1e+300, larger in magnitude than 1e+06"),
]


@pytest.mark.parametrize("labels, words", BAD_LABELS)
def test_train_refuses_out_of_range_labels_before_the_run_dir_exists(tmp_path, labels, words):
    folder = _folder(tmp_path, labels=labels)
    outdir = tmp_path / "runs"
    result = invoke(f"--outdir={outdir}", f"--data={folder}", "--cfg=tiny", "--metrics=none", "--cond=True")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert f"{folder}/dataset.json: the label of img001.png: {words}" in errors[0], errors
    assert not outdir.exists()


@pytest.mark.parametrize("labels, words", BAD_LABELS)
def test_dataset_tool_refuses_out_of_range_labels(tmp_path, labels, words):
    from click.testing import CliRunner

    import dataset_tool

    folder = _folder(tmp_path, labels=labels)
    dest = tmp_path / "out.zip"
    result = CliRunner().invoke(dataset_tool.main, [f"--source={folder}", f"--dest={dest}"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and f"label of img001.png: {words}" in lines[-1], result.output
    assert not dest.exists()


def test_dataset_tool_refuses_a_fifo_named_like_an_image(tmp_path):
    from click.testing import CliRunner

    import dataset_tool

    folder = _folder(tmp_path)
    _spoil(folder, "fifo")
    dest = tmp_path / "out.zip"
    result = CliRunner().invoke(dataset_tool.main, [f"--source={folder}", f"--dest={dest}"])  # returns: no block
    assert result.exit_code == 1 and not dest.exists(), result.output
    assert result.output.strip().splitlines()[-1] == (f"Error: --source: {folder}/img011.png is a FIFO (named pipe), "
                                                      f"not an image file; remove it from the source folder")

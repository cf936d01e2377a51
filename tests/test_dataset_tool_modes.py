"""dataset_tool.py: --convert/--background for mixed colour modes, --dest inside --source, label rules,
unwritable or full destinations, `~` in paths (issue 17, items 5 and 6)."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from train_helpers import invoke as invoke_train

RGBA_PIXELS = [(10, 20, 30, 0), (10, 20, 30, 255), (200, 100, 50, 128)]  # first three pixels of row 0


def run_tool(*args):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args])


def png_images(dest: pathlib.Path) -> list[np.ndarray]:
    with zipfile.ZipFile(dest) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        return [np.asarray(PIL.Image.open(archive.open(n))) for n in names]


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def mixed_folder(tmp_path) -> pathlib.Path:
    """a: RGBA, b: palette with a transparent entry, c: 16-bit gray, d: 8-bit gray, e: RGB; all 8x8."""
    src = tmp_path / "mixed"
    src.mkdir()
    rgba = np.full((8, 8, 4), 255, dtype=np.uint8)
    rgba[0, :3] = RGBA_PIXELS
    PIL.Image.fromarray(rgba, "RGBA").save(src / "a.png")
    palette = PIL.Image.fromarray(np.tile(np.array([0, 1, 2, 1], dtype=np.uint8), (8, 2)), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    palette.save(src / "b.png", transparency=0)  # palette entry 0 is transparent
    PIL.Image.fromarray(np.full((8, 8), 0x1234, dtype=np.uint16)).save(src / "c.png")
    PIL.Image.fromarray(np.full((8, 8), 77, dtype=np.uint8), "L").save(src / "d.png")
    PIL.Image.fromarray(np.full((8, 8, 3), (255, 0, 0), dtype=np.uint8), "RGB").save(src / "e.png")
    return src


def test_mixed_modes_convert_to_rgb_over_white(mixed_folder, tmp_path):
    dest = tmp_path / "rgb.zip"
    result = run_tool("--source", mixed_folder, "--dest", dest, "--convert=rgb", "--background=white")
    assert result.exit_code == 0, result.output
    a, b, c, d, e = png_images(dest)
    assert all(img.shape == (8, 8, 3) and img.dtype == np.uint8 for img in (a, b, c, d, e))
    blended = [round(v * 128 / 255 + 255 * 127 / 255) for v in (200, 100, 50)]
    assert a[0, :3].tolist() == [[255, 255, 255], [10, 20, 30], blended]  # alpha composited on white
    assert b[0, :4].tolist() == [[255, 255, 255], [255, 0, 0], [0, 0, 255], [255, 0, 0]]  # transparent -> white
    assert (c == 0x12).all()  # 16-bit 0x1234 keeps its top byte
    assert (d == 77).all() and (e == [255, 0, 0]).all()


def test_mixed_modes_convert_to_grayscale_over_black(mixed_folder, tmp_path):
    dest = tmp_path / "l.zip"
    result = run_tool("--source", mixed_folder, "--dest", dest, "--convert=l", "--background=black")
    assert result.exit_code == 0, result.output
    a, b, c, d, e = png_images(dest)
    assert all(img.shape == (8, 8) for img in (a, b, c, d, e))
    assert a[0, 0] == 0 and a[0, 1] == round(10 * 0.299 + 20 * 0.587 + 30 * 0.114)  # 19: PIL's ITU-R 601 luma
    assert b[0, 0] == 0 and b[0, 1] == 76  # transparent -> black; pure red -> 76
    assert (c == 0x12).all() and (d == 77).all() and (e == 76).all()


def test_without_convert_mixed_modes_keep_the_clear_refusal(mixed_folder, tmp_path):
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", tmp_path / "out.zip"))
    assert "a.png: has 4 channels" in line and "--convert=rgb" in line
    os.remove(mixed_folder / "a.png")
    os.remove(mixed_folder / "b.png")
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", tmp_path / "out.zip"))
    assert "c.png: is a 16-bit image; pass --convert=l" in line
    assert not (tmp_path / "out.zip").exists()
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", tmp_path / "o.zip", "--background=black"))
    assert "--background=black only applies with --convert" in line


def test_dest_inside_source_is_not_read_back(mixed_folder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("d.png", "e.png"):
        shutil.copy(mixed_folder / name, src / name)
    (src / ".out.abc123.tmp").mkdir()  # a leftover temp copy of an interrupted run
    shutil.copy(mixed_folder / "d.png", src / ".out.abc123.tmp" / "x.png")
    for extra in ([], ["--force"]):
        result = run_tool("--source", src, "--dest", src / "out", "--convert=rgb", *extra)
        assert result.exit_code == 0 and "Wrote 2 images" in result.output, result.output
    assert sorted(p.name for p in (src / "out" / "00000").iterdir()) == ["img00000000.png", "img00000001.png"]


# ----------------------------------------------------------------------------------------------------------------
# Labels.

def labelled_folder(tmp_path, mixed_folder, labels) -> pathlib.Path:
    src = tmp_path / "labelled"
    src.mkdir()
    for name in ("d.png", "e.png"):
        shutil.copy(mixed_folder / name, src / name)
    (src / "dataset.json").write_text(json.dumps(labels))
    return src


@pytest.mark.parametrize("labels, words", [
    ({"labels": [["d.png", [1.0, 2.0]], ["e.png", [1.0]]]}, "label of e.png has 1 values but that of d.png has 2"),
    ({"labels": [["d.png", 0], ["e.pgn", 1]]}, "no label for e.png (1 of 2 images unlabelled) (" ),
    ({"labels": {"d.png": 0}}, '"labels" is a dict'),
    ({"classes": []}, 'no "labels" entry'),
    ({"labels": [["d.png", 0], ["e.png", [1.0]]]}, "use class indices for all images or vectors for all"),
    ({"labels": [["d.png", "cat"], ["e.png", 1]]}, 'label of d.png is "cat"'),
    ({"labels": [["d.png"], ["e.png", 1]]}, 'entry 0 is ["d.png"]'),
])
def test_malformed_labels_are_named(tmp_path, mixed_folder, labels, words):
    src = labelled_folder(tmp_path, mixed_folder, labels)
    line = one_error_line(run_tool("--source", src, "--dest", tmp_path / "out.zip"))
    assert f"{src / 'dataset.json'}: " in line and words in line
    assert not (tmp_path / "out.zip").exists()


def test_misspelt_entry_is_pointed_out(tmp_path, mixed_folder):
    src = labelled_folder(tmp_path, mixed_folder, {"labels": [["d.png", 0], ["e.pgn", 1]]})
    line = one_error_line(run_tool("--source", src, "--dest", tmp_path / "out.zip"))
    assert "names e.pgn, which is not an image here: misspelt?" in line


def test_train_cond_on_a_malformed_labels_file_says_what_is_wrong(tmp_path, mixed_folder):
    src = labelled_folder(tmp_path, mixed_folder, {"labels": [["d.png", 0], ["e.png", 1]]})
    dest = tmp_path / "data"
    assert run_tool("--source", src, "--dest", dest, "--convert=rgb").exit_code == 0
    labels = json.loads((dest / "dataset.json").read_text())["labels"]
    labels[1][1] = [0.5, 0.5]
    (dest / "dataset.json").write_text(json.dumps({"labels": labels}))
    result = invoke_train(f"--outdir={tmp_path / 'runs'}", f"--data={dest}", "--cfg=tiny", "--cond=True", "--dry-run")
    assert result.exit_code != 0 and "--cond=True: " in result.output
    assert "img00000001.png is [0.5, 0.5]; expected an integer class index" in result.output
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------------------------
# Destinations and paths.

def test_unwritable_dest_gives_one_line(tmp_path, mixed_folder):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", blocker / "out", "--convert=rgb"))
    assert f"--dest {blocker / 'out'}: cannot write" in line and "choose a writable --dest" in line


@pytest.mark.parametrize("dest_name", ["out", "out.zip"])
def test_full_disk_leaves_nothing_behind(tmp_path, mixed_folder, monkeypatch, dest_name):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    written = []

    def fill_up(path, data):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        written.append(path)
        real_write(path, data)

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_write = dataset_tool._write_file
    monkeypatch.setattr(dataset_tool, "_write_file", fill_up)
    monkeypatch.setattr(os, "fsync", fsync_full)  # the zip writer's atomic_write
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", out_root / dest_name, "--convert=rgb"))
    assert line.endswith(f"--dest {out_root / dest_name}: cannot write (no space left on device); free some disk space "
                         f"or choose another --dest")
    assert list(out_root.iterdir()) == []


def test_a_read_only_dest_is_not_blamed_on_the_disk(tmp_path, mixed_folder, monkeypatch):
    def read_only(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(dataset_tool, "_write_file", read_only)  # (root ignores chmod, so the error is simulated)
    line = one_error_line(run_tool("--source", mixed_folder, "--dest", tmp_path / "out", "--convert=rgb"))
    assert line.endswith(f"--dest {tmp_path / 'out'}: cannot write (read-only file system); choose a writable --dest")
    assert "disk space" not in line and not (tmp_path / "out").exists()


def test_tilde_expands_in_source_and_dest(tmp_path, mixed_folder, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run_tool(f"--source=~/{mixed_folder.name}", "--dest=~/home.zip", "--convert=l")
    assert result.exit_code == 0, result.output
    assert len(png_images(tmp_path / "home.zip")) == 5 and not os.path.exists("~")

"""dataset_tool.py: every source type round trip, transforms and filters, labels, and every bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import pickle
import shutil
import sys
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from training.dataset import ImageFolderDataset

# ----------------------------------------------------------------------------------------------------------------
# Helpers.


def run_tool(*args: str):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args], catch_exceptions=False)


def save_png(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path)


def read_png(data: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(data)))


def zip_contents(path: pathlib.Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def dir_contents(path: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def random_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """Independent box-filter reference for an integer downscale by k."""
    h, w = image.shape[:2]
    return image.reshape(h // k, k, w // k, k, -1).astype(np.float64).mean(axis=(1, 3)).squeeze()


@pytest.fixture
def emoji_folder(tmp_path, embedded_dataset_dir) -> tuple[pathlib.Path, list[np.ndarray]]:
    """Six real emoji PNGs in nested folders; returns the folder and the arrays in sorted relative-path order."""
    src = tmp_path / "src"
    files = sorted(embedded_dataset_dir.glob("*.png"))[:6]
    rels = [f"a/{f.name}" if i % 2 else f"b/sub/{f.name}" for i, f in enumerate(files)]
    for f, rel in zip(files, rels):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / rel)
    order = sorted(range(len(rels)), key=lambda i: rels[i])
    arrays = [np.asarray(PIL.Image.open(files[i]).convert("RGB")) for i in order]
    return src, arrays


# ----------------------------------------------------------------------------------------------------------------
# Round trips.


def test_folder_to_zip_round_trip(emoji_folder, tmp_path):
    src, arrays = emoji_folder
    dest = tmp_path / "out.zip"
    result = run_tool("--source", src, "--dest", dest)
    assert result.exit_code == 0, result.output
    contents = zip_contents(dest)
    expected_names = [f"00000/img{k:08d}.png" for k in range(6)]
    assert sorted(contents) == expected_names + ["dataset.json"]
    with zipfile.ZipFile(dest) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    for name, array in zip(expected_names, arrays):
        np.testing.assert_array_equal(read_png(contents[name]), array)
        assert len(contents[name]) > array.size  # compression level 0: stored, not deflated
    assert json.loads(contents["dataset.json"]) == {"labels": None}


def test_folder_labels_are_carried_over(emoji_folder, tmp_path):
    src, _ = emoji_folder
    rels = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    (src / "dataset.json").write_text(json.dumps({"labels": [[r, i % 3] for i, r in enumerate(rels)]}))
    dest = tmp_path / "out"
    assert run_tool("--source", src, "--dest", dest).exit_code == 0
    meta = json.loads((dest / "dataset.json").read_text())
    assert meta == {"labels": [[f"00000/img{k:08d}.png", k % 3] for k in range(6)]}
    ds = ImageFolderDataset(str(dest), use_labels=True)
    np.testing.assert_array_equal(ds.get_label(4), [0, 1, 0])


def test_partially_labelled_source_is_refused_naming_the_first_unlabelled_image(emoji_folder, tmp_path):
    src, _ = emoji_folder
    rels = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    (src / "dataset.json").write_text(json.dumps({"labels": [[rels[0], [0.5, 1.5]]]}))
    dest = tmp_path / "out.zip"
    result = run_tool("--source", src, "--dest", dest)
    assert result.exit_code == 1 and f"no label for {rels[1]} (5 of 6 images unlabelled)" in result.output
    assert not dest.exists()


def test_zip_source_round_trip_with_float_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = {f"x/{i}.png": random_image(rng, 8, 8) for i in range(3)}
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        for name, array in images.items():
            buf = io.BytesIO()
            PIL.Image.fromarray(array).save(buf, format="png")
            z.writestr(name, buf.getvalue())
        z.writestr("dataset.json", json.dumps({"labels": [[n, [i, -1.5]] for i, n in enumerate(images)]}))
    dest = tmp_path / "out"
    assert run_tool("--source", src, "--dest", dest).exit_code == 0
    out = dir_contents(dest)
    for k, array in enumerate(images.values()):
        np.testing.assert_array_equal(read_png(out[f"00000/img{k:08d}.png"]), array)
    ds = ImageFolderDataset(str(dest), use_labels=True)
    np.testing.assert_allclose(ds.get_label(2), [2.0, -1.5])
    assert not ds.has_onehot_labels


def write_cifar_tarball(path: pathlib.Path, per_batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    all_data, all_labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        for b in range(1, 6):
            data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
            blob = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{b}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            all_data.append(data)
            all_labels += labels
    images = np.concatenate(all_data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.array(all_labels)


def test_cifar10_round_trip(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    images, labels = write_cifar_tarball(src)
    dest = tmp_path / "cifar.zip"
    assert run_tool("--source", src, "--dest", dest).exit_code == 0
    out = zip_contents(dest)
    assert len(out) == 11
    for k in range(10):
        np.testing.assert_array_equal(read_png(out[f"00000/img{k:08d}.png"]), images[k])
    meta = json.loads(out["dataset.json"])
    assert [label for _, label in meta["labels"]] == labels.tolist()


def test_cifar_pickle_that_names_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    src = tmp_path / "cifar-10-python.tar.gz"
    blob = pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2)
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    result = run_tool("--source", src, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 1 and "refusing to load" in result.output
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out.zip").exists()


def write_mnist(folder: pathlib.Path, n: int = 4) -> tuple[pathlib.Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    img_path = folder / "train-images-idx3-ubyte.gz"
    with gzip.open(img_path, "wb") as f:
        f.write((2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28)) + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.tobytes())
    return img_path, images, labels


def test_mnist_round_trip(tmp_path):
    src, images, labels = write_mnist(tmp_path)
    dest = tmp_path / "mnist"
    assert run_tool("--source", src, "--dest", dest).exit_code == 0
    for k in range(len(images)):
        png = PIL.Image.open(dest / f"00000/img{k:08d}.png")
        assert png.mode == "L" and png.size == (32, 32)
        out = np.asarray(png)
        np.testing.assert_array_equal(out[2:30, 2:30], images[k])
        assert out[:2].sum() == 0 and out[:, 30:].sum() == 0  # 2-pixel black border
    meta = json.loads((dest / "dataset.json").read_text())
    assert [label for _, label in meta["labels"]] == labels.tolist()
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert ds.image_shape == [1, 32, 32] and ds.label_shape == [int(labels.max()) + 1]


# ----------------------------------------------------------------------------------------------------------------
# Transforms and filters.


def test_center_crop_box_matches_block_mean(tmp_path):
    rng = np.random.default_rng(3)
    wide = random_image(rng, 32, 48)  # h=32, w=48: the central square is columns 8..40
    save_png(tmp_path / "src" / "wide.png", wide)
    dest = tmp_path / "out"
    args = ["--source", tmp_path / "src", "--dest", dest, "--transform", "center-crop", "--resize-filter", "box"]
    assert run_tool(*args, "--resolution", "16x16").exit_code == 0
    out = np.asarray(PIL.Image.open(dest / "00000/img00000000.png")).astype(np.float64)
    reference = block_mean(wide[:, 8:40], 2)
    assert out.shape == (16, 16, 3)
    assert np.abs(out - reference).max() <= 1.0


def test_lanczos_is_default_and_differs_from_box(tmp_path):
    rng = np.random.default_rng(4)
    image = random_image(rng, 32, 32)
    save_png(tmp_path / "src" / "a.png", image)
    outs = {}
    for name, extra in [("default", []), ("lanczos", ["--resize-filter", "lanczos"]), ("box", ["--resize-filter", "box"])]:
        dest = tmp_path / f"{name}.zip"
        assert run_tool("--source", tmp_path / "src", "--dest", dest, "--resolution", "8x8", *extra).exit_code == 0
        outs[name] = read_png(zip_contents(dest)["00000/img00000000.png"]).astype(np.float64)
    np.testing.assert_array_equal(outs["default"], outs["lanczos"])
    assert np.abs(outs["box"] - block_mean(image, 4)).max() <= 1.0
    assert np.abs(outs["lanczos"] - outs["box"]).mean() > 5.0  # lanczos sharpens random noise


def test_center_crop_wide_pastes_band_into_black_square(tmp_path):
    rng = np.random.default_rng(5)
    image = random_image(rng, 48, 64)  # target 32x16: band height round(64*16/32)=32, rows 8..40
    save_png(tmp_path / "src" / "a.png", image)
    save_png(tmp_path / "src" / "b_small.png", random_image(rng, 16, 16))  # narrower than 32: skipped
    dest = tmp_path / "out"
    result = run_tool("--source", tmp_path / "src", "--dest", dest, "--transform", "center-crop-wide",
                      "--width", "32", "--height", "16", "--resize-filter", "box")
    assert result.exit_code == 0, result.output
    assert "skipping" in result.output and "b_small.png" in result.output
    out = np.asarray(PIL.Image.open(dest / "00000/img00000000.png")).astype(np.float64)
    assert out.shape == (32, 32, 3)
    assert out[:8].sum() == 0 and out[24:].sum() == 0
    assert np.abs(out[8:24] - block_mean(image[8:40], 2)).max() <= 1.0
    assert not (dest / "00000/img00000001.png").exists()


def test_resolution_option_equals_width_height(tmp_path, emoji_folder):
    src, _ = emoji_folder
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    assert run_tool("--source", src, "--dest", a, "--resolution", "16x16").exit_code == 0
    assert run_tool("--source", src, "--dest", b, "--width", "16", "--height", "16").exit_code == 0
    assert zip_contents(a) == zip_contents(b)


def test_mixed_size_jpgs_center_crop_256_load_in_training_dataset(tmp_path):
    rng = np.random.default_rng(6)
    src = tmp_path / "photos"
    for i, (h, w) in enumerate([(300, 400), (512, 280), (260, 260)]):
        src.mkdir(exist_ok=True)
        PIL.Image.fromarray(random_image(rng, h, w)).save(src / f"p{i}.jpg", quality=90)
    dest = tmp_path / "x.zip"
    result = run_tool("--source", src, "--dest", dest, "--transform", "center-crop", "--resolution", "256x256")
    assert result.exit_code == 0, result.output
    ds = ImageFolderDataset(str(dest))
    assert len(ds) == 3 and ds.image_shape == [3, 256, 256] and ds.label_shape == [0]
    image, label = ds[1]
    assert image.shape == (3, 256, 256) and image.dtype == np.uint8 and label.shape == (0,)


def test_grayscale_and_max_images(tmp_path):
    rng = np.random.default_rng(7)
    grays = [random_image(rng, 8, 8, c=1) for _ in range(4)]
    for i, g in enumerate(grays):
        save_png(tmp_path / "src" / f"{i}.png", g)
    dest = tmp_path / "out.zip"
    assert run_tool("--source", tmp_path / "src", "--dest", dest, "--max-images", "2").exit_code == 0
    out = zip_contents(dest)
    assert sorted(out) == ["00000/img00000000.png", "00000/img00000001.png", "dataset.json"]
    png = PIL.Image.open(io.BytesIO(out["00000/img00000001.png"]))
    assert png.mode == "L"
    np.testing.assert_array_equal(np.asarray(png), grays[1])


def test_progress_reports_count_and_eta(emoji_folder, tmp_path):
    src, _ = emoji_folder
    result = run_tool("--source", src, "--dest", tmp_path / "out.zip")
    assert "6/6 images" in result.output and "ETA" in result.output


def test_zip_and_directory_outputs_load_identically(emoji_folder, tmp_path):
    src, _ = emoji_folder
    assert run_tool("--source", src, "--dest", tmp_path / "o.zip", "--resolution", "32x32").exit_code == 0
    assert run_tool("--source", src, "--dest", tmp_path / "o", "--resolution", "32x32").exit_code == 0
    a, b = ImageFolderDataset(str(tmp_path / "o.zip")), ImageFolderDataset(str(tmp_path / "o"))
    assert len(a) == len(b) == 6
    for i in range(6):
        np.testing.assert_array_equal(a[i][0], b[i][0])


# ----------------------------------------------------------------------------------------------------------------
# Bad input: a one-line error, exit status 1, and nothing written next to the destination.


def make_bad_source(kind: str, root: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(8)
    src = root / "src"
    src.mkdir()
    if kind == "sizes":
        save_png(src / "a.png", random_image(rng, 8, 8))
        save_png(src / "b.png", random_image(rng, 16, 16))
    elif kind == "rgba":
        save_png(src / "a.png", random_image(rng, 8, 8, c=4))
    elif kind == "channels":
        save_png(src / "a.png", random_image(rng, 8, 8, c=1))
        save_png(src / "b.png", random_image(rng, 8, 8))
    elif kind == "corrupt":
        save_png(src / "a.png", random_image(rng, 8, 8))
        (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    elif kind == "ok":
        save_png(src / "a.png", random_image(rng, 8, 8))
    elif kind == "lmdb":
        src = root / "bedroom_train_lmdb"
        src.mkdir()
        (src / "data.mdb").write_bytes(b"")
    elif kind == "text":
        src = root / "notes.txt"
        src.write_text("hello")
    return src


BAD_INPUTS = [
    # (source kind, extra args, expected words in the error)
    ("sizes", [], "use --transform=center-crop"),
    ("ok", ["--width", "8", "--height", "4"], "must be square"),
    ("ok", ["--resolution", "12x12"], "not a power of two"),
    ("rgba", [], "has 4 channels"),
    ("channels", [], "has 3 channels but the first image has 1"),
    ("empty", [], "no images found"),
    ("corrupt", ["--strict"], "b.png: cannot decode"),
    ("ok", ["--transform", "center-crop"], "needs an output size"),
    ("ok", ["--width", "8"], "--width and --height go together"),
    ("ok", ["--resolution", "8x8", "--width", "16", "--height", "16"], "disagrees with --width/--height"),
    ("ok", ["--resolution", "big"], "expected WxH"),
    ("lmdb", [], "pip install lmdb"),
    ("text", [], "unknown input type"),
    ("missing", [], "no such file or directory"),
]


@pytest.mark.parametrize("dest_name", ["out.zip", "out"])
@pytest.mark.parametrize("kind,extra,words", BAD_INPUTS)
def test_bad_input_errors_and_writes_nothing(tmp_path, monkeypatch, kind, extra, words, dest_name):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # as on a machine without the optional package
    src = make_bad_source(kind, tmp_path) if kind not in ("empty", "missing") else tmp_path / "src"
    if kind == "empty":
        src.mkdir()
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    result = run_tool("--source", src, "--dest", out_root / dest_name, *extra)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and words in error_lines[0], result.output
    assert list(out_root.iterdir()) == []


def test_corrupt_file_is_skipped_with_a_warning(tmp_path):
    src = make_bad_source("corrupt", tmp_path)
    dest = tmp_path / "out.zip"
    result = run_tool("--source", src, "--dest", dest)
    assert result.exit_code == 0
    assert "warning: skipping" in result.output and "b.png" in result.output
    assert sorted(zip_contents(dest)) == ["00000/img00000000.png", "dataset.json"]


@pytest.mark.parametrize("dest_name", ["out.zip", "out"])
def test_existing_destination_refused_unless_force(tmp_path, dest_name):
    src = make_bad_source("ok", tmp_path)
    dest = tmp_path / dest_name
    if dest_name.endswith(".zip"):
        dest.write_bytes(b"old")
    else:
        dest.mkdir()
        (dest / "old.txt").write_text("old")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_tool("--source", src, "--dest", dest)
    assert result.exit_code == 1 and "--force" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert run_tool("--source", src, "--dest", dest, "--force").exit_code == 0
    names = sorted(zip_contents(dest)) if dest_name.endswith(".zip") else sorted(dir_contents(dest))
    assert names == ["00000/img00000000.png", "dataset.json"]


def test_existing_empty_directory_is_accepted(tmp_path):
    src = make_bad_source("ok", tmp_path)
    (tmp_path / "out").mkdir()
    assert run_tool("--source", src, "--dest", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "00000" / "img00000000.png").is_file()


@pytest.mark.parametrize("dest_name", ["out.zip", "out"])
def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch, emoji_folder, dest_name):
    src, _ = emoji_folder
    calls = {"n": 0}
    real_encode = dataset_tool.encode_png

    def interrupt_on_third(image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_encode(image)

    monkeypatch.setattr(dataset_tool, "encode_png", interrupt_on_third)
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    with pytest.raises(KeyboardInterrupt):
        dataset_tool.convert_dataset(source=str(src), dest=str(out_root / dest_name))
    assert calls["n"] == 3 and list(out_root.iterdir()) == []


class _FakeLmdb:
    """The few py-lmdb calls the tool makes (open / stat / begin / cursor), backed by a dict."""

    Error = RuntimeError

    def __init__(self, records: dict[bytes, bytes]):
        self.records = records

    def open(self, path, **kwargs):
        assert kwargs.get("readonly") is True and kwargs.get("lock") is False
        return self

    def stat(self):
        return {"entries": len(self.records)}

    def begin(self, write=False, buffers=False):
        assert write is False
        return self

    def cursor(self):
        return iter(sorted(self.records.items()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_lmdb_source_with_the_package_installed(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    images = [random_image(rng, 12, 16) for _ in range(3)]
    records = {}
    for i, image in enumerate(images):
        buf = io.BytesIO()
        PIL.Image.fromarray(image).save(buf, format="webp", lossless=True)
        records[f"key{i}".encode()] = buf.getvalue()
    records[b"key9"] = b"not an image"  # undecodable record: reported and skipped
    monkeypatch.setitem(sys.modules, "lmdb", _FakeLmdb(records))
    src = tmp_path / "church_outdoor_train_lmdb"
    src.mkdir()
    dest = tmp_path / "lsun.zip"
    result = run_tool("--source", src, "--dest", dest, "--transform", "center-crop-wide", "--resolution", "8x4",
                      "--resize-filter", "box")
    assert result.exit_code == 0, result.output
    assert "skipping" in result.output and "key9" in result.output
    out = zip_contents(dest)
    assert len(out) == 4
    band = read_png(out["00000/img00000002.png"]).astype(np.float64)
    assert band.shape == (8, 8, 3) and band[:2].sum() == 0 and band[6:].sum() == 0
    assert np.abs(band[2:6] - block_mean(images[2][2:10], 2)).max() <= 1.0  # rows 2..10 of 12: the 16x8 band

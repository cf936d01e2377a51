"""training/dataset.py: indexing, mirror, subset, labels, zip/dir parity, RAM cache, workers, errors."""

from __future__ import annotations

import json
import pathlib
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training import dataset as dataset_module
from training.dataset import ImageFolderDataset, make_training_set_kwargs


def write_images(folder: pathlib.Path, arrays: list[np.ndarray], names: list[str] | None = None) -> list[str]:
    names = names or [f"{i:02d}/img{i:03d}.png" for i in range(len(arrays))]
    for name, array in zip(names, arrays):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(array).save(folder / name)
    return names


def zip_folder(folder: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(dest, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return dest


@pytest.fixture
def small_set(tmp_path) -> tuple[pathlib.Path, np.ndarray]:
    """Ten random 8x8 RGB images; returns the folder and the images as [N, C, H, W]."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(10)]
    folder = tmp_path / "small"
    write_images(folder, arrays)
    return folder, np.stack(arrays).transpose(0, 3, 1, 2)


def set_labels(folder: pathlib.Path, labels: list) -> None:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    (folder / "dataset.json").write_text(json.dumps({"labels": [[n, lab] for n, lab in zip(names, labels)]}))


# ----------------------------------------------------------------------------------------------------------------


def test_embedded_dataset_matches_pil(embedded_dataset_dir):
    ds = ImageFolderDataset(str(embedded_dataset_dir))
    files = sorted(embedded_dataset_dir.glob("*.png"))
    assert len(ds) == len(files) == 169
    assert ds.name == "emoji-smileys" and ds.image_shape == [3, 64, 64]
    assert ds.resolution == 64 and ds.num_channels == 3
    assert ds.label_shape == [0] and ds.label_dim == 0 and not ds.has_labels
    assert ds.in_ram  # few-shot: decoded once
    for i in (0, 77, 168):
        image, label = ds[i]
        reference = np.asarray(PIL.Image.open(files[i]).convert("RGB")).transpose(2, 0, 1)
        assert image.dtype == np.uint8 and label.dtype == np.float32 and label.shape == (0,)
        np.testing.assert_array_equal(image, reference)


def test_zip_directory_and_ram_cache_agree(small_set, tmp_path):
    folder, images = small_set
    archive = zip_folder(folder, tmp_path / "small.zip")
    variants = [ImageFolderDataset(str(folder)), ImageFolderDataset(str(archive)),
                ImageFolderDataset(str(archive), cache_in_ram=False), ImageFolderDataset(str(folder), cache_in_ram=False)]
    assert [v.in_ram for v in variants] == [True, True, False, False]
    assert variants[1].name == "small"
    for ds in variants:
        got = np.stack([ds[i][0] for i in range(len(ds))])
        np.testing.assert_array_equal(got, images)


def test_ram_cache_threshold(small_set, monkeypatch):
    folder, _ = small_set
    monkeypatch.setattr(dataset_module, "RAM_CACHE_MAX_IMAGES", 9)
    assert not ImageFolderDataset(str(folder)).in_ram
    assert ImageFolderDataset(str(folder), max_size=9).in_ram  # the subset is what has to fit
    monkeypatch.setattr(dataset_module, "RAM_CACHE_MAX_IMAGES", 10)
    monkeypatch.setattr(dataset_module, "RAM_CACHE_MAX_RESOLUTION", 4)
    assert not ImageFolderDataset(str(folder)).in_ram


def test_xflip_doubles_with_mirrored_second_half(small_set):
    folder, images = small_set
    ds = ImageFolderDataset(str(folder), xflip=True)
    assert len(ds) == 20
    for i in (0, 3, 9):
        np.testing.assert_array_equal(ds[i][0], images[i])
        np.testing.assert_array_equal(ds[i + 10][0], images[i][:, :, ::-1])
        assert ds[i + 10][0].flags.c_contiguous
    assert ds.get_details(13).raw_idx == 3 and ds.get_details(13).xflip and not ds.get_details(3).xflip


def test_max_size_is_a_seeded_sorted_subset_applied_before_xflip(small_set):
    folder, images = small_set
    pick = lambda ds: [ds.get_details(i).raw_idx for i in range(len(ds))]  # noqa: E731
    a = ImageFolderDataset(str(folder), max_size=4, random_seed=0)
    b = ImageFolderDataset(str(folder), max_size=4, random_seed=0)
    c = ImageFolderDataset(str(folder), max_size=4, random_seed=123)
    assert len(a) == 4 and pick(a) == pick(b) == sorted(set(pick(a)))
    assert pick(a) != pick(c)
    for i, raw in enumerate(pick(a)):
        np.testing.assert_array_equal(a[i][0], images[raw])
    flipped = ImageFolderDataset(str(folder), max_size=4, random_seed=0, xflip=True)
    assert len(flipped) == 8 and pick(flipped) == pick(a) * 2
    assert len(ImageFolderDataset(str(folder), max_size=50)) == 10  # larger than the set: everything
    with pytest.raises(ValueError, match="at least 1"):
        ImageFolderDataset(str(folder), max_size=0)


def test_integer_labels_become_one_hot(small_set):
    folder, _ = small_set
    classes = [0, 3, 1, 1, 2, 0, 3, 2, 1, 0]
    set_labels(folder, classes)
    ds = ImageFolderDataset(str(folder), use_labels=True, xflip=True)
    assert ds.has_labels and ds.has_onehot_labels and ds.label_shape == [4] and ds.label_dim == 4
    for i in range(20):
        expected = np.eye(4, dtype=np.float32)[classes[i % 10]]
        np.testing.assert_array_equal(ds[i][1], expected)
    unlabelled = ImageFolderDataset(str(folder), use_labels=False)
    assert unlabelled.label_shape == [0] and unlabelled[1][1].shape == (0,)


def test_float_label_vectors_are_kept(small_set):
    folder, _ = small_set
    vectors = [[i * 0.5, -i, 2.25] for i in range(10)]
    set_labels(folder, vectors)
    ds = ImageFolderDataset(str(folder), use_labels=True)
    assert not ds.has_onehot_labels and ds.label_shape == [3]
    np.testing.assert_allclose(ds.get_label(7), [3.5, -7.0, 2.25])
    assert ds.get_label(7).dtype == np.float32


def test_grayscale_gets_a_channel_axis(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, size=(4, 4), dtype=np.uint8) for _ in range(3)]
    write_images(tmp_path / "g", arrays)
    ds = ImageFolderDataset(str(tmp_path / "g"))
    assert ds.image_shape == [1, 4, 4]
    np.testing.assert_array_equal(ds[2][0][0], arrays[2])


def test_dataloader_workers_read_the_zip_like_the_main_process(small_set, tmp_path):
    folder, images = small_set
    archive = zip_folder(folder, tmp_path / "small.zip")
    ds = ImageFolderDataset(str(archive), cache_in_ram=False)
    _ = ds[0]  # the main process has its own zip handle open now
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=workers, shuffle=False)
        batches.append(torch.cat([x for x, _ in loader]).numpy())
    np.testing.assert_array_equal(batches[0], images)
    np.testing.assert_array_equal(batches[1], images)


def test_pickle_drops_the_open_zip(small_set, tmp_path):
    folder, images = small_set
    ds = ImageFolderDataset(str(zip_folder(folder, tmp_path / "s.zip")), cache_in_ram=False, xflip=True)
    _ = ds[4]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._zipfile is None
    np.testing.assert_array_equal(clone[14][0], images[4][:, :, ::-1])


def test_training_set_kwargs(small_set):
    folder, _ = small_set
    kwargs = make_training_set_kwargs(str(folder), xflip=True)
    assert kwargs == {"class_name": "training.dataset.ImageFolderDataset", "path": str(folder),
                      "use_labels": False, "max_size": 10, "xflip": True, "resolution": 8}
    assert kwargs.resolution == 8
    subset = make_training_set_kwargs(str(folder), max_size=3, random_seed=5)
    assert subset.max_size == 3 and subset.random_seed == 5
    import dnnlib

    ds = dnnlib.util.construct_class_by_name(**subset)
    assert len(ds) == 3 and ds.get_details(0).raw_idx == ImageFolderDataset(str(folder), max_size=3, random_seed=5).get_details(0).raw_idx
    with pytest.raises(ValueError, match="--subset must be between 1 and 10"):
        make_training_set_kwargs(str(folder), max_size=11)
    with pytest.raises(ValueError, match="labels"):
        make_training_set_kwargs(str(folder), use_labels=True)


# ----------------------------------------------------------------------------------------------------------------
# Errors: one clear message naming the dataset (and the file where there is one).


def test_labels_requested_but_absent(small_set):
    folder, _ = small_set
    with pytest.raises(ValueError, match="labels requested .* has no dataset.json labels"):
        ImageFolderDataset(str(folder), use_labels=True)
    (folder / "dataset.json").write_text('{"labels": null}')
    with pytest.raises(ValueError, match="labels requested"):
        ImageFolderDataset(str(folder), use_labels=True)


@pytest.mark.parametrize("content,words", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', 'a \\"labels\\" key'),
    ('{"labels": [["00/img000.png", 1]]}', "no label for 01/img001.png"),
    ('{"labels": 5}', "list of \\[file name, label\\] pairs"),
])
def test_bad_labels_file(small_set, content, words):
    folder, _ = small_set
    (folder / "dataset.json").write_text(content)
    with pytest.raises(ValueError, match=words):
        ImageFolderDataset(str(folder), use_labels=True)


def test_labels_of_the_wrong_type(small_set):
    folder, _ = small_set
    set_labels(folder, ["cat"] * 10)
    with pytest.raises(ValueError, match="integer class indices or lists of numbers, got e.g. 'cat'"):
        ImageFolderDataset(str(folder), use_labels=True)
    set_labels(folder, [[1.0, 2.0]] * 9 + [[1.0]])
    with pytest.raises(ValueError, match="different lengths"):
        ImageFolderDataset(str(folder), use_labels=True)


def test_empty_and_missing_datasets(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found"):
        ImageFolderDataset(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        ImageFolderDataset(str(tmp_path / "nope"))
    (tmp_path / "x.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        ImageFolderDataset(str(tmp_path / "x.zip"))


@pytest.mark.parametrize("cache_in_ram", [True, False])
def test_mixed_shapes(tmp_path, cache_in_ram):
    rng = np.random.default_rng(2)
    write_images(tmp_path / "m", [rng.integers(0, 256, size=(s, s, 3), dtype=np.uint8) for s in (8, 8, 16)])
    with pytest.raises(ValueError, match="img002.png has shape \\[3, 16, 16\\]"):
        ds = ImageFolderDataset(str(tmp_path / "m"), cache_in_ram=cache_in_ram)
        _ = [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("shape,words", [((8, 4, 3), "square power-of-two"), ((12, 12, 3), "square power-of-two"),
                                         ((8, 8, 4), "transparency \\(mode RGBA\\)"), ((2, 2, 3), "at least 4x4")])
def test_unusable_image_shapes(tmp_path, shape, words):
    write_images(tmp_path / "u", [np.zeros(shape, dtype=np.uint8)])
    with pytest.raises(ValueError, match=words):
        ImageFolderDataset(str(tmp_path / "u"))


def test_resolution_mismatch(small_set):
    folder, _ = small_set
    assert ImageFolderDataset(str(folder), resolution=8).resolution == 8
    with pytest.raises(ValueError, match="resolution=16 was requested"):
        ImageFolderDataset(str(folder), resolution=16)

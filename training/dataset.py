"""Training-side datasets: a Dataset base (indexing, mirror, subset, labels) and ImageFolderDataset.

ImageFolderDataset reads the layout written by dataset_tool.py (a directory or a zip of PNGs plus an optional
`dataset.json`). Items are `(uint8 CHW numpy image, float32 label vector)`. The zip is opened lazily in each
process that reads from it (DataLoader workers after fork or spawn), and few-shot datasets are decoded once into
one contiguous uint8 array kept in RAM, which forked workers then share copy-on-write.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np
import PIL.Image
import torch

import dnnlib
from torch_utils import load_budget
from training import label_range

# Few-shot datasets at most this large are decoded once and kept in RAM (10k images at 256 px is ~2 GB for RGB).
RAM_CACHE_MAX_IMAGES = 10_000
RAM_CACHE_MAX_RESOLUTION = 256

LABELS_FILE = "dataset.json"


class NoLabels(ValueError):
    """Labels were requested but the dataset has none (no dataset.json, or "labels": null).

    A malformed dataset.json raises a plain ValueError naming the problem instead, so callers can tell
    "unlabelled" from "broken".
    """


class Dataset(torch.utils.data.Dataset):
    """Index bookkeeping shared by all image datasets: subset, x-flip doubling and labels.

    Subclasses provide `_load_raw_image(raw_idx)` (uint8 CHW) and `_load_raw_labels()` (None, int [N] or
    float [N, D]).
    """

    def __init__(
        self,
        name: str,
        raw_shape: list[int],
        max_size: int | None = None,
        use_labels: bool = False,
        xflip: bool = False,
        random_seed: int = 0,
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = bool(use_labels)
        self._raw_labels: np.ndarray | None = None
        self._label_shape: list[int] | None = None
        self._raw_idx = _select_subset(self._raw_shape[0], max_size, random_seed, name)
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:  # second half of the index list serves the same images mirrored
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    # -- subclass hooks ------------------------------------------------------------------------------------------

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        raise NotImplementedError

    def _load_raw_labels(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- labels --------------------------------------------------------------------------------------------------

    def _get_raw_labels(self) -> np.ndarray:
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                if self._use_labels:
                    raise NoLabels(
                        f"{self._name}: labels requested (use_labels / --cond) but the dataset has no "
                        f"{LABELS_FILE} labels; add them with dataset_tool.py or train without --cond"
                    )
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            self._raw_labels = _check_labels(labels, self._raw_shape[0], self._name)
        return self._raw_labels

    def get_label(self, idx: int) -> np.ndarray:
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:  # integer class index -> one-hot
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    def get_details(self, idx: int) -> dnnlib.EasyDict:
        return dnnlib.EasyDict(
            raw_idx=int(self._raw_idx[idx]),
            xflip=bool(self._xflip[idx]),
            raw_label=self._get_raw_labels()[self._raw_idx[idx]].copy(),
        )

    # -- items ---------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        image = self._load_raw_image(int(self._raw_idx[idx]))
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.array(image, order="C", copy=True), self.get_label(idx)  # one copy: never expose the RAM cache

    # -- properties ----------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_shape(self) -> list[int]:
        return list(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        return self.image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        if self._label_shape is None:
            labels = self._get_raw_labels()
            if labels.dtype == np.int64:
                self._label_shape = [int(labels.max()) + 1]
            else:
                self._label_shape = list(labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self) -> int:
        return int(np.prod(self.label_shape))

    @property
    def has_labels(self) -> bool:
        return any(dim != 0 for dim in self.label_shape)

    @property
    def has_onehot_labels(self) -> bool:
        return self._get_raw_labels().dtype == np.int64


def _select_subset(num_raw: int, max_size: int | None, random_seed: int, name: str) -> np.ndarray:
    """All raw indices, or a seeded random subset of `max_size` of them kept in sorted order."""
    raw_idx = np.arange(num_raw, dtype=np.int64)
    if max_size is None:
        return raw_idx
    if int(max_size) < 1:
        raise ValueError(f"{name}: max_size (--subset) must be at least 1, got {max_size}")
    if num_raw > max_size:
        np.random.RandomState(random_seed % (1 << 31)).shuffle(raw_idx)
        raw_idx = np.sort(raw_idx[: int(max_size)])
    return raw_idx


def _check_labels(labels: np.ndarray, num_images: int, name: str) -> np.ndarray:
    if labels.shape[0] != num_images:
        raise ValueError(f"{name}: {labels.shape[0]} labels for {num_images} images; regenerate {LABELS_FILE}")
    if labels.ndim == 1:
        if labels.size and labels.min() < 0:
            raise ValueError(f"{name}: negative class index in {LABELS_FILE}; class labels must be 0, 1, 2, ...")
        if labels.size and labels.max() >= label_range.MAX_CLASSES:
            raise ValueError(f"{name}: class index {labels.max()} in {LABELS_FILE} is not below "
                             f"{label_range.MAX_CLASSES}; {label_range.FIX}")
        return labels.astype(np.int64)
    if labels.ndim != 2:
        raise ValueError(f"{name}: labels in {LABELS_FILE} must be integers or flat lists of floats")
    labels = labels.astype(np.float32)
    if not np.isfinite(labels).all():  # dataset.json is checked value by value; this covers other sources
        raise ValueError(f"{name}: non-finite label values in {LABELS_FILE}; {label_range.FIX}")
    return labels


# ----------------------------------------------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """The images of a directory or zip archive (sorted by relative path), with labels from `dataset.json`."""

    def __init__(
        self,
        path: str,
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
        cache_in_ram: bool | None = None,
    ):
        self._path = str(path)
        self._zipfile: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._cache: np.ndarray | None = None
        self._cache_row: np.ndarray | None = None
        self._kind = _detect_kind(self._path)
        self._image_fnames = self._list_image_files()
        name = os.path.splitext(os.path.basename(self._path.rstrip("/\\")))[0]

        first = self._decode(self._image_fnames[0])
        raw_shape = [len(self._image_fnames)] + list(first.shape)
        _check_image_shape(raw_shape[1:], self._path, resolution)
        super().__init__(name=name, raw_shape=raw_shape, max_size=max_size, use_labels=use_labels,
                         xflip=xflip, random_seed=random_seed)
        if cache_in_ram is None:
            num_used = np.unique(self._raw_idx).size  # a small --subset of a big set fits too
            cache_in_ram = num_used <= RAM_CACHE_MAX_IMAGES and self.resolution <= RAM_CACHE_MAX_RESOLUTION
        if cache_in_ram:
            self._fill_ram_cache()
        if use_labels:
            self._get_raw_labels()  # fail now, not in a DataLoader worker
        self.close()  # never hand an open zip to forked workers

    # -- file access ---------------------------------------------------------------------------------------------

    def _list_image_files(self) -> list[str]:
        PIL.Image.init()
        extensions = {ext.lower() for ext in PIL.Image.EXTENSION}
        if self._kind == "dir":
            names = []
            for root, _dirs, files in os.walk(self._path):
                for f in files:
                    names.append(os.path.relpath(os.path.join(root, f), self._path).replace(os.sep, "/"))
        else:
            load_budget.check_image_zip(self._get_zipfile(), self._path,  # bombs refused unread
                                        lambda n: os.path.splitext(n)[1].lower() in extensions, LABELS_FILE)
            names = self._get_zipfile().namelist()
        images = sorted(n for n in names if os.path.splitext(n)[1].lower() in extensions)
        if self._kind == "dir":
            for fname in images:
                _check_regular_file(self._path, fname)
        if not images:
            raise ValueError(
                f"{self._path}: no image files found (looked for {', '.join(sorted(extensions)[:6])}, ...); "
                f"create the dataset with dataset_tool.py"
            )
        return images

    def _get_zipfile(self) -> zipfile.ZipFile:
        # A zip handle shares its file offset with a forked copy, so each process opens its own.
        if self._zipfile is None or self._zip_pid != os.getpid():
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except (zipfile.BadZipFile, NotImplementedError, EOFError) as err:
                raise ValueError(f"{self._path}: not a readable zip archive ({err}); rebuild it with "
                                 f"dataset_tool.py") from None
            self._zip_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname: str) -> io.IOBase:
        if self._kind == "dir":
            return open(os.path.join(self._path, fname), "rb")
        try:
            return self._get_zipfile().open(fname, "r")
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as err:  # RuntimeError: encrypted member
            raise ValueError(f"{self._path}: cannot read {fname} ({err}); rebuild the archive with "
                             f"dataset_tool.py") from None

    def _has_file(self, fname: str) -> bool:
        if self._kind == "dir":
            return os.path.isfile(os.path.join(self._path, fname))
        return fname in self._get_zipfile().namelist()

    def _decode(self, fname: str) -> np.ndarray:
        try:
            with self._open_file(fname) as f:
                image = np.array(self._in_training_mode(PIL.Image.open(f), fname))
        except UnsupportedMode:
            raise
        except Exception as err:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(f"{self._path}: cannot decode {fname} ({_first_line(err)}); remove or replace the "
                             f"file") from None
        if image.ndim == 2:
            image = image[:, :, np.newaxis]
        if image.dtype != np.uint8:
            raise ValueError(f"{self._path}: {fname} is not 8-bit ({image.dtype}); re-encode it with dataset_tool.py")
        return image.transpose(2, 0, 1)  # HWC -> CHW

    def close(self) -> None:
        if self._zipfile is not None:
            self._zipfile.close()
        self._zipfile = None
        self._zip_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zipfile"] = None  # reopened lazily in the worker
        state["_zip_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- images --------------------------------------------------------------------------------------------------

    def _fill_ram_cache(self) -> None:
        """Decode every image the index list uses, once, into one contiguous array."""
        used = np.unique(self._raw_idx)
        cache = np.empty([used.size] + self.image_shape, dtype=np.uint8)
        for row, raw_idx in enumerate(used):
            cache[row] = self._load_from_file(int(raw_idx))
        row_of = np.full(self._raw_shape[0], -1, dtype=np.int64)
        row_of[used] = np.arange(used.size)
        self._cache, self._cache_row = cache, row_of

    @property
    def in_ram(self) -> bool:
        return self._cache is not None

    def _load_from_file(self, raw_idx: int) -> np.ndarray:
        fname = self._image_fnames[raw_idx]
        image = self._decode(fname)
        if list(image.shape) != self.image_shape:
            raise ValueError(_other_shape_message(self._path, fname, list(image.shape), self.image_shape))
        return image

    def _in_training_mode(self, image: PIL.Image.Image, fname: str) -> PIL.Image.Image:
        """The image itself, a palette image expanded to RGB (its pixels are palette indices, not colours),
        or an UnsupportedMode naming the file and the dataset_tool.py option that converts it."""
        self._check_mode(image, fname)
        return image.convert("RGB") if image.mode == "P" else image

    def _check_mode(self, image: PIL.Image.Image, fname: str) -> None:
        problem = _mode_problem(image)
        if problem is not None:
            raise UnsupportedMode(f"{self._path}: {fname} {problem}")

    def _check_header(self, fname: str) -> None:
        """Size and mode from the header, and (PNG) every chunk's CRC read through, without decompressing."""
        try:
            with self._open_file(fname) as f:
                image = PIL.Image.open(f)
                self._check_mode(image, fname)
                channels = 1 if image.mode == "L" else 3  # a palette becomes RGB
                shape = [channels, image.height, image.width]
                image.verify()
        except UnsupportedMode:
            raise
        except Exception as err:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(f"{self._path}: cannot decode {fname} ({_first_line(err)}); remove or replace the "
                             f"file") from None
        if shape != self.image_shape:
            raise ValueError(_other_shape_message(self._path, fname, shape, self.image_shape))

    def check_all_images(self, decode: bool, on_progress: Any = None) -> None:
        """Every image (not only the sample of check_images): readable, the first one's size and mode, and
        decoded in full when `decode` (otherwise its header read and, for PNG, its chunks' CRCs verified).
        `on_progress(count)` after each image."""
        for raw_idx, fname in enumerate(self._image_fnames):
            if decode:
                self._load_from_file(raw_idx)
            else:
                self._check_header(fname)
            if on_progress is not None:
                on_progress(raw_idx + 1)

    def check_images(self, sample: int = 16) -> None:
        """Decode the last and `sample` images spread over the folder (the first is decoded on opening):
        a corrupt file, another size or another mode is found before training, not in a loader worker."""
        num = self._raw_shape[0]
        for raw_idx in sorted({*np.linspace(0, num - 1, num=min(sample, num)).astype(int).tolist(), num - 1}):
            self._load_from_file(raw_idx)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[self._cache_row[raw_idx]]
        return self._load_from_file(raw_idx)

    # -- labels --------------------------------------------------------------------------------------------------

    def _load_raw_labels(self) -> np.ndarray | None:
        if not self._has_file(LABELS_FILE):
            return None
        where = f"{self._path}/{LABELS_FILE}"
        try:
            with self._open_file(LABELS_FILE) as f:
                meta = load_budget.read_json(f, where)  # OverBudget is a ValueError naming the file
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{where}: not valid JSON ({err}); rewrite it as {{\"labels\": [[file, label], ...]}}") from err
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:  # a damaged member of the archive
            raise ValueError(f"{where}: cannot be read from the archive ({err}); rebuild it with dataset_tool.py") \
                from None
        if not isinstance(meta, dict) or "labels" not in meta:
            raise ValueError(f"{where}: expected an object with a \"labels\" key, e.g. {{\"labels\": null}}")
        entries = meta["labels"]
        if entries is None:
            return None
        by_name = _labels_by_name(entries, where)
        missing = [f for f in self._image_fnames if f not in by_name]
        if missing:
            raise ValueError(f"{where}: no label for {missing[0]} ({len(missing)} of {len(self._image_fnames)} "
                             f"images unlabelled); label every image or set \"labels\" to null")
        labels = [by_name[f] for f in self._image_fnames]
        _check_label_types(labels, self._image_fnames, where)
        array = np.array(labels)
        return array.astype(np.int64) if array.ndim == 1 else array.astype(np.float32)


def _labels_by_name(entries: Any, where: str) -> dict[str, Any]:
    """{"labels": [[file, label], ...]} -> {file: label}, naming the first entry that is not such a pair."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: \"labels\" is a {type(entries).__name__}; expected a list of [file name, "
                         f"label] pairs or null")
    by_name = {}
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"{where}: entry {i} is {json.dumps(entry)[:60]}; expected [\"path/img.png\", label]")
        by_name[entry[0].replace("\\", "/")] = entry[1]
    return by_name


def _check_label_types(labels: list[Any], fnames: list[str], where: str) -> None:
    """All class indices (int >= 0), or all number vectors of one length; names the first file that differs."""
    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    first = labels[0]
    for fname, label in zip(fnames, labels):
        if isinstance(first, int) and not isinstance(first, bool):
            ok = isinstance(label, int) and not isinstance(label, bool)
            expected = "an integer class index like the first image's"
        elif isinstance(first, list) and all(is_number(v) for v in first):
            ok = isinstance(label, list) and len(label) == len(first) and all(is_number(v) for v in label)
            if isinstance(label, list) and ok is False and all(is_number(v) for v in label):
                raise ValueError(f"{where}: label vectors have different lengths ({fname} has {len(label)}, "
                                 f"{fnames[0]} has {len(first)}); use one length for all")
            expected = f"a list of {len(first)} numbers like the first image's"
        else:
            raise ValueError(f"{where}: labels must be integer class indices or lists of numbers, got e.g. "
                             f"{first!r:.40} for {fnames[0]}; fix that entry")
        if not ok:
            raise ValueError(f"{where}: the label of {fname} is {json.dumps(label)[:40]}; expected {expected}")
        problem = label_range.label_problem(label)
        if problem is not None:
            raise ValueError(f"{where}: the label of {fname}: {problem}; {label_range.FIX}")


class UnsupportedMode(ValueError):
    """An image mode training cannot use as it is (alpha, 16-bit, CMYK, ...); str() is one line."""


# Modes used as they are; a palette without transparency is expanded to RGB. Everything else is refused
# with the dataset_tool.py option that converts it (alpha needs a background colour chosen by the user).
_TRAINING_MODES = ("L", "RGB")


def _mode_problem(image: PIL.Image.Image) -> str | None:
    mode = image.mode
    if mode in _TRAINING_MODES or (mode == "P" and "transparency" not in image.info):
        return None
    if mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        return (f"has transparency (mode {mode}); rebuild the dataset with dataset_tool.py --convert=rgb, which "
                f"composites it over --background")
    return (f"is mode {mode} (e.g. 16-bit, 1-bit, CMYK); only 8-bit grayscale, RGB and palette images train "
            f"as they are: rebuild the dataset with dataset_tool.py --convert=rgb (or --convert=l)")


def _other_shape_message(path: str, fname: str, shape: list[int], expected: list[int]) -> str:
    return (f"{path}: {fname} has shape {shape} (CHW) but the first image has {expected}; rebuild the dataset "
            f"with dataset_tool.py --transform and --resolution")


def _check_regular_file(root: str, fname: str) -> None:
    """A FIFO, device or socket named like an image would block or never end when read: refuse it by name."""
    try:
        kind = dnnlib.util.special_file_kind(os.path.join(root, fname))
    except OSError as err:
        raise ValueError(f"{root}: cannot read {fname} ({err.strerror}); remove it or fix the link") from None
    if kind is not None:
        raise ValueError(f"{root}: {fname} is {kind}, not an image file; remove it from the dataset folder")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _detect_kind(path: str) -> str:
    if os.path.isdir(path):
        return "dir"
    if os.path.isfile(path):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: not a zip archive; pass a dataset directory or a .zip made by dataset_tool.py")
        return "zip"
    raise FileNotFoundError(f"{path}: dataset not found; pass a directory or .zip made by dataset_tool.py (--data)")


def _check_image_shape(chw: list[int], path: str, resolution: int | None) -> None:
    channels, height, width = chw
    if channels not in (1, 3):
        raise ValueError(f"{path}: images have {channels} channels; only 1 (grayscale) or 3 (RGB) are supported")
    if height != width or width & (width - 1) != 0 or width < 4:
        raise ValueError(
            f"{path}: images are {width}x{height}; training needs square power-of-two images of at least 4x4 "
            f"(rebuild with dataset_tool.py --transform=center-crop --resolution=256x256)"
        )
    if resolution is not None and resolution != width:
        raise ValueError(f"{path}: images are {width}x{height} but resolution={resolution} was requested")


# ----------------------------------------------------------------------------------------------------------------


def make_training_set_kwargs(
    path: str,
    use_labels: bool = False,
    max_size: int | None = None,
    xflip: bool = False,
    random_seed: int = 0,
) -> dnnlib.EasyDict:
    """The `training_set_kwargs` of training_options.json for train.py's --data/--cond/--subset/--mirror.

    Opens the dataset once to fill in its resolution and size and to check the options against it.
    """
    probe = ImageFolderDataset(path=path, use_labels=use_labels, cache_in_ram=False)
    num_images = len(probe)
    if use_labels and not probe.has_labels:
        raise ValueError(f"--cond=1 requires labels, but {path} has none; add labels to {LABELS_FILE}")
    kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path=str(path),
                             use_labels=bool(use_labels), max_size=num_images, xflip=bool(xflip),
                             resolution=probe.resolution)
    if max_size is not None:
        if not 1 <= max_size <= num_images:
            raise ValueError(f"--subset must be between 1 and {num_images} (the dataset size), got {max_size}")
        if max_size < num_images:
            kwargs.max_size = int(max_size)
            kwargs.random_seed = int(random_seed)
    probe.close()
    return kwargs

"""Dataset options (`training_set_kwargs`) as data: one known class, known keys, checked types and ranges.

Snapshots, training_options.json and results.json carry the dataset options a run used, including a `class_name`.
Those files may come from strangers, so the name is never imported or looked up: it must be one of
DATASET_CLASSES (mapped here to the class itself) and every argument must be one we write, of the right type and
range. `open_dataset` is the only way options become a dataset object in the metrics code.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

DEFAULT_DATASET_CLASS = "training.dataset.ImageFolderDataset"
DATASET_CLASSES = (DEFAULT_DATASET_CLASS,)  # the names a file may give; each maps to our class in _dataset_class
MAX_PATH_CHARS = 4096
MAX_SEED = 2 ** 32 - 1
MAX_IMAGES = 2 ** 31 - 1
MAX_RESOLUTION = 8192


class DatasetOptionsError(ValueError):
    """Dataset options that are not ours or not in range; str() is one line without the fix."""


def _check_path(value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\0" in value:
        raise DatasetOptionsError(f"path must be a non-empty string of at most {MAX_PATH_CHARS} characters")


def _check_flag(name: str):
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise DatasetOptionsError(f"{name} must be true or false, got {type(value).__name__}")
    return check


def _check_int(name: str, low: int, high: int, none_ok: bool = False, power_of_two: bool = False):
    def check(value: Any) -> None:
        if value is None and none_ok:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
            raise DatasetOptionsError(f"{name} must be an integer in [{low}, {high}]"
                                      f"{' or null' if none_ok else ''}, got {str(value)[:40]}")
        if power_of_two and int(value) & (int(value) - 1):
            raise DatasetOptionsError(f"{name} must be a power of two, got {int(value)}")
    return check


# Every key train.py (training/config.py, training/dataset.py) and upstream write, with its check.
CHECKS = {
    "path": _check_path,
    "resolution": _check_int("resolution", 4, MAX_RESOLUTION, none_ok=True, power_of_two=True),
    "use_labels": _check_flag("use_labels"),
    "xflip": _check_flag("xflip"),
    "max_size": _check_int("max_size", 1, MAX_IMAGES, none_ok=True),
    "random_seed": _check_int("random_seed", 0, MAX_SEED),
}


def checked_dataset_kwargs(kwargs: Any) -> dict:
    """A plain copy of `kwargs` (class_name filled in, ints as int), or DatasetOptionsError saying what is wrong."""
    if not isinstance(kwargs, dict):
        raise DatasetOptionsError(f"the dataset options are a {type(kwargs).__name__}, not a dict")
    class_name = kwargs.get("class_name", DEFAULT_DATASET_CLASS)
    if not isinstance(class_name, str) or class_name not in DATASET_CLASSES:
        raise DatasetOptionsError(f"class_name {str(class_name)[:80]!r} is not a dataset class of this project "
                                  f"(only {', '.join(DATASET_CLASSES)})")
    unknown = sorted(str(key)[:40] for key in kwargs if key != "class_name" and key not in CHECKS)
    if unknown:
        raise DatasetOptionsError(f"unknown dataset option(s) {', '.join(unknown[:5])}")
    if "path" not in kwargs:
        raise DatasetOptionsError("the dataset options name no path")
    if isinstance(kwargs["path"], os.PathLike):  # only code passes path objects; a file holds strings
        kwargs = dict(kwargs, path=os.fspath(kwargs["path"]))
    for key, check in CHECKS.items():
        if key in kwargs:
            check(kwargs[key])
    plain = {key: (int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value)
             for key, value in kwargs.items() if key != "class_name"}
    return dict(class_name=class_name, **plain)


def open_dataset(kwargs: Any) -> Any:
    """The dataset the (checked) options describe; the class comes from our table, never from the name."""
    checked = checked_dataset_kwargs(kwargs)
    cls = _dataset_class(checked.pop("class_name"))
    return cls(**checked)


def _dataset_class(class_name: str) -> type:
    from training.dataset import ImageFolderDataset  # local: keeps this module free of numpy/PIL imports

    return {DEFAULT_DATASET_CLASS: ImageFolderDataset}[class_name]


def dataset_kwargs_from_file(kwargs: Any, source: str) -> dict:
    """Options read from a snapshot or results file: checked, else DatasetOptionsError naming the file."""
    try:
        return checked_dataset_kwargs(kwargs)
    except DatasetOptionsError as error:
        raise DatasetOptionsError(f"{source}: its dataset options (training_set_kwargs) are ignored: {error}") from None

"""Turn a folder, zip, CIFAR-10 tarball, MNIST gz or LSUN LMDB into a training-ready image dataset.

    python dataset_tool.py --source=~/photos --dest=~/datasets/photos256.zip \\
        --transform=center-crop --resolution=256x256

Output layout (directory or zip of stored, uncompressed entries): image k as `<k//1000:05d>/img<k:08d>.png`
(uncompressed PNG, grayscale or RGB) plus `dataset.json` = {"labels": [[file, label], ...]} or {"labels": null}.
Everything is written under a temporary name and renamed at the end, so an error or Ctrl-C leaves nothing behind.
Mixed colour modes are refused unless `--convert=rgb|l` turns every image (RGBA, palette, 16-bit, grayscale)
into one mode, compositing alpha over `--background`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import click
import numpy as np
import PIL.Image

from dnnlib.cli_errors import expand_user
from dnnlib.progress import ProgressBar
from dnnlib.util import atomic_write, current_umask, special_file_kind
from torch_utils import load_budget
from training import label_range

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LABELS_FILE = "dataset.json"
RESIZE_FILTERS = {"box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS}
CONVERT_MODES = ("rgb", "l")
BACKGROUNDS = {"white": 255.0, "black": 0.0}


class ToolError(click.ClickException):
    """A bad input or option: reported as one line, exit status 1, nothing written."""


class CorruptImage(Exception):
    """An input file that cannot be decoded (skipped with a warning unless --strict)."""


@dataclass
class SourceImage:
    name: str  # where it came from, for messages
    read: Callable[[], np.ndarray]  # HWC uint8 (HW for grayscale); raises CorruptImage
    label: Any = None  # int class, list of floats, or None


# ----------------------------------------------------------------------------------------------------------------
# Command line.


@click.command()
@click.option("--source", required=True, metavar="PATH", callback=expand_user,
              help="Input: image directory (searched recursively), .zip, CIFAR-10 python tarball, "
                   "MNIST train-images-idx3-ubyte.gz, or LSUN LMDB directory")
@click.option("--dest", required=True, metavar="PATH", callback=expand_user, help="Output directory or .zip archive")
@click.option("--max-images", type=click.IntRange(min=1), metavar="INT", help="Stop after this many images")
@click.option("--transform", type=click.Choice(["center-crop", "center-crop-wide"]), help="Crop before resizing")
@click.option("--resolution", metavar="WxH", help="Output size, e.g. 256x256 (same as --width/--height)")
@click.option("--width", type=click.IntRange(min=1), metavar="INT", help="Output width")
@click.option("--height", type=click.IntRange(min=1), metavar="INT", help="Output height")
@click.option("--resize-filter", type=click.Choice(list(RESIZE_FILTERS)), default="lanczos", show_default=True,
              help="Resampling filter")
@click.option("--convert", type=click.Choice(CONVERT_MODES), help="Turn every image into RGB or grayscale (L): "
              "alpha is composited over --background, palettes expanded, 16-bit scaled to 8-bit")
@click.option("--background", type=click.Choice(list(BACKGROUNDS)), help="Colour under transparent pixels with "
              "--convert  [default: white]")
@click.option("--strict", is_flag=True, help="Abort on an undecodable image instead of skipping it")
@click.option("--force", is_flag=True, help="Replace a non-empty existing --dest")
def main(**kwargs: Any) -> None:
    """Convert an image collection into the StyleGAN2-ADA dataset layout (PNG files + dataset.json)."""
    convert_dataset(**kwargs)


def convert_dataset(
    source: str,
    dest: str,
    max_images: int | None = None,
    transform: str | None = None,
    resolution: str | None = None,
    width: int | None = None,
    height: int | None = None,
    resize_filter: str = "lanczos",
    convert: str | None = None,
    background: str | None = None,
    strict: bool = False,
    force: bool = False,
) -> int:
    """Run the whole conversion; returns the number of images written. Raises ToolError on bad input."""
    width, height = resolve_size(resolution, width, height)
    if background is not None and convert is None:
        raise ToolError(f"--background={background} only applies with --convert; add --convert=rgb (or l)")
    if transform is not None and (width is None or height is None):
        raise ToolError(f"--transform={transform} needs an output size; add --resolution=WxH (or --width and --height)")
    if transform == "center-crop-wide" and height > width:
        raise ToolError(f"--transform=center-crop-wide needs width >= height, got {width}x{height}")
    if not os.path.exists(source):
        raise ToolError(f"--source {source}: no such file or directory")
    check_dest(source, dest, force)
    apply_transform = make_transform(transform, width, height, resize_filter)
    to_one_mode = make_mode_converter(convert, BACKGROUNDS[background or "white"])
    with open_source(source, exclude=dest) as (total, items):
        if total == 0:
            raise ToolError(f"--source {source}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
        if max_images is not None:
            total = min(total, max_images)
        try:
            with open_writer(dest, force) as writer:
                count = write_images(items, total, lambda image, name: apply_transform(to_one_mode(image, name)),
                                     writer, strict)
        except OSError as err:  # the writer has removed its temporary output already
            reason = (err.strerror or str(err)).lower()
            full = err.errno in (errno.ENOSPC, errno.EDQUOT)  # else read-only, permissions, a file in the way
            fix = "free some disk space or choose another --dest" if full else "choose a writable --dest"
            raise ToolError(f"--dest {dest}: cannot write ({reason}); {fix}") from None
    click.echo(f"Wrote {count} images to {dest}", err=True)
    return count


def resolve_size(resolution: str | None, width: int | None, height: int | None) -> tuple[int | None, int | None]:
    """Merge --resolution WxH with the upstream --width/--height."""
    if resolution is not None:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", resolution)
        if not m or int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
            raise ToolError(f"--resolution {resolution!r}: expected WxH with positive integers, e.g. 256x256")
        res_w = int(m.group(1))
        res_h = int(m.group(2)) if m.group(2) is not None else res_w
        if (width is not None and width != res_w) or (height is not None and height != res_h):
            raise ToolError(f"--resolution {resolution} disagrees with --width/--height; give only one of them")
        width, height = res_w, res_h
    if (width is None) != (height is None):
        raise ToolError("--width and --height go together; give both (or --resolution=WxH)")
    return width, height


def check_dest(source: str, dest: str, force: bool) -> None:
    if os.path.abspath(source) == os.path.abspath(dest):
        raise ToolError(f"--dest {dest} is the same as --source; choose a new path")
    if is_zip_path(dest):
        if os.path.isdir(dest):
            raise ToolError(f"--dest {dest} is an existing directory; choose a .zip file name")
        if os.path.exists(dest) and not force:
            raise ToolError(f"--dest {dest} already exists; pass --force to overwrite it")
        return
    if os.path.isfile(dest):
        raise ToolError(f"--dest {dest} is an existing file; give a directory or a .zip path")
    if os.path.isdir(dest) and os.listdir(dest) and not force:
        raise ToolError(f"--dest folder {dest} exists and is not empty; choose a new folder or pass --force to replace it")


def is_zip_path(path: str) -> bool:
    return path.lower().endswith(".zip")


# ----------------------------------------------------------------------------------------------------------------
# Main loop: decode, transform, check, write.


def write_images(
    items: Iterable[SourceImage],
    total: int,
    apply_transform: Callable[[np.ndarray, str], np.ndarray | None],
    writer: "DatasetWriter",
    strict: bool,
) -> int:
    first_shape: tuple[int, int, int] | None = None
    labels: list[list[Any]] = []
    progress = ProgressBar(total, "images")
    for item in items:
        if len(labels) >= total:
            break
        try:
            image = item.read()
        except CorruptImage as err:
            if strict:
                raise ToolError(f"{item.name}: cannot decode ({err}); remove it or drop --strict to skip it") from None
            warn(f"skipping {item.name}: cannot decode ({err})")
            continue
        image = apply_transform(image, item.name)
        if image is None:
            warn(f"skipping {item.name}: too small for the requested crop")
            continue
        if image.ndim == 2:
            image = image[:, :, np.newaxis]
        first_shape = check_image(image, first_shape, item.name)
        fname = archive_name(len(labels))
        writer.add(fname, encode_png(image))
        labels.append([fname, item.label])
        progress.update()
    progress.close()
    if not labels:
        raise ToolError("no images could be written (all were undecodable or too small); check --source")
    all_labelled = all(label is not None for _, label in labels)
    metadata = {"labels": labels if all_labelled else None}
    writer.add(LABELS_FILE, json.dumps(metadata).encode("utf-8"))
    return len(labels)


def check_image(image: np.ndarray, first_shape: tuple[int, int, int] | None, name: str) -> tuple[int, int, int]:
    """The checks of the upstream tool, on the image after its transform; returns the shape all must share."""
    h, w, c = image.shape
    if first_shape is None:
        if c not in (1, 3):
            raise ToolError(f"{name}: has {c} channels; only grayscale (1) or RGB (3) images are supported "
                            f"(pass --convert=rgb to composite the alpha channel over --background)")
        if w != h:
            raise ToolError(f"{name}: output image is {w}x{h} but must be square; "
                            f"use --transform=center-crop --resolution=NxN")
        if w & (w - 1) != 0:
            raise ToolError(f"{name}: output width {w} is not a power of two; use --resolution=256x256 (or 128, 512, ...)")
        return (h, w, c)
    if c != first_shape[2]:
        raise ToolError(f"{name}: has {c} channels but the first image has {first_shape[2]}; "
                        f"pass --convert=rgb (or --convert=l) to turn all images into one mode")
    if (h, w) != first_shape[:2]:
        raise ToolError(f"{name}: is {w}x{h} but the first image is {first_shape[1]}x{first_shape[0]}; "
                        f"use --transform=center-crop --resolution=WxH to make all images one size")
    return first_shape


def archive_name(index: int) -> str:
    return f"{index // 1000:05d}/img{index:08d}.png"


def encode_png(image: np.ndarray) -> bytes:
    pil = PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image, "L" if image.shape[2] == 1 else "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="png", compress_level=0, optimize=False)
    return buf.getvalue()


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


# ----------------------------------------------------------------------------------------------------------------
# Transforms (all on HWC/HW uint8 arrays; PIL does the resampling).


def make_transform(
    transform: str | None, width: int | None, height: int | None, resize_filter: str
) -> Callable[[np.ndarray], np.ndarray | None]:
    resample = RESIZE_FILTERS[resize_filter]

    def resize(image: np.ndarray) -> np.ndarray:
        if width is None or (image.shape[1] == width and image.shape[0] == height):
            return image
        squeezed = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        return np.asarray(PIL.Image.fromarray(squeezed).resize((width, height), resample))

    def center_crop(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return resize(image[top : top + side, left : left + side])

    def center_crop_wide(image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        band_h, band_w = int(np.round(w * height / width)), w
        if band_h > h:  # taller than the target aspect: narrow the band instead
            band_h, band_w = h, int(np.round(h * width / height))
        if band_w < width or band_h < height:
            return None
        top, left = (h - band_h) // 2, (w - band_w) // 2
        band = resize(image[top : top + band_h, left : left + band_w])
        canvas = np.zeros((width, width) + band.shape[2:], dtype=np.uint8)
        offset = (width - height) // 2
        canvas[offset : offset + height] = band
        return canvas

    return {None: resize, "center-crop": center_crop, "center-crop-wide": center_crop_wide}[transform]


# ----------------------------------------------------------------------------------------------------------------
# Sources: each yields (total, iterable of SourceImage) and releases its files on exit.


@contextlib.contextmanager
def open_source(path: str, exclude: str | None = None) -> Iterator[tuple[int, Iterable[SourceImage]]]:
    """exclude: the --dest path; when it lies inside a source folder its files (and temp copies) are skipped."""
    if os.path.isdir(path):
        if path.rstrip("/\\").endswith("_lmdb") or os.path.isfile(os.path.join(path, "data.mdb")):
            with open_lmdb(path) as opened:
                yield opened
        else:
            yield open_image_folder(path, exclude)
    elif is_zip_path(path) or zipfile.is_zipfile(path):
        with open_zip(path) as opened:
            yield opened
    elif path.endswith("-images-idx3-ubyte.gz"):
        yield open_mnist(path)
    elif tarfile.is_tarfile(path):
        yield open_cifar10(path)
    else:
        raise ToolError(f"--source {path}: unknown input type; give a directory, a .zip, cifar-10-python.tar.gz, "
                        f"train-images-idx3-ubyte.gz or an LMDB directory")


def decode_image(data: Callable[[], Any], name: str) -> np.ndarray:
    """Decode with PIL into L, LA, RGB or RGBA uint8, or 16-bit grayscale (alpha and 16-bit are kept so that
    --convert can handle them and the checks can name them otherwise)."""
    try:
        with data() as f:
            pil = PIL.Image.open(f)
            pil.load()
    except Exception as err:  # noqa: BLE001 - any decoder failure means a corrupt file
        raise CorruptImage(f"{type(err).__name__}: {err}") from None
    if pil.mode == "1":
        pil = pil.convert("L")
    elif pil.mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
    elif pil.mode == "PA":
        pil = pil.convert("RGBA")
    elif pil.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        pil = pil.convert("RGB")
    elif pil.mode not in ("L", "RGB", "RGBA", "LA") and not pil.mode.startswith(SIXTEEN_BIT_MODES):
        raise ToolError(f"{name}: image mode {pil.mode} (float or multi-band) is not supported; save it as 8-bit RGB")
    return np.asarray(pil)


# ----------------------------------------------------------------------------------------------------------------
# Colour modes: refuse anything but 8-bit, or with --convert turn every image into one mode.

SIXTEEN_BIT_MODES = ("I;16", "I")  # PNG 16-bit grayscale opens as one of these (values 0..65535)


def make_mode_converter(convert: str | None, background: float) -> Callable[[np.ndarray, str], np.ndarray]:
    """image, name -> image in one mode ("rgb": HxWx3, "l": HxW), or unchanged 8-bit when convert is None."""

    def keep_8bit(image: np.ndarray, name: str) -> np.ndarray:
        if image.dtype != np.uint8:
            raise ToolError(f"{name}: is a {8 * image.dtype.itemsize}-bit image; pass --convert=l (or rgb) to scale "
                            f"it to 8-bit, or save it as 8-bit")
        return image

    def to_one_mode(image: np.ndarray, name: str) -> np.ndarray:
        image = to_8bit(image)
        if image.ndim == 2:
            image = image[:, :, np.newaxis]
        if image.shape[2] in (2, 4):  # LA, RGBA: alpha last
            image = composite(image, background)
        if convert == "rgb" and image.shape[2] == 1:
            return np.repeat(image, 3, axis=2)
        if convert == "l" and image.shape[2] == 3:
            return np.asarray(PIL.Image.fromarray(image, "RGB").convert("L"))  # ITU-R 601 luma, as PIL does
        return image[:, :, 0] if image.shape[2] == 1 else image

    return keep_8bit if convert is None else to_one_mode


def to_8bit(image: np.ndarray) -> np.ndarray:
    """16-bit values 0..65535 keep their top byte (65535 -> 255), as PIL and image editors do."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def composite(image: np.ndarray, background: float) -> np.ndarray:
    """Colour channels over a uniform background, weighted by the last (alpha) channel."""
    alpha = image[:, :, -1:].astype(np.float32) / 255.0
    colour = image[:, :, :-1].astype(np.float32)
    return np.round(colour * alpha + background * (1.0 - alpha)).astype(np.uint8)


LABELS_EXAMPLE = '{"labels": [["path/img.png", 3], ...]} or {"labels": null}'


def read_source_labels(read_json: Callable[[], Any] | None, where: str) -> dict[str, Any]:
    """Labels by relative path from a source dataset.json (empty when absent or null); names what is malformed."""
    if read_json is None:
        return {}
    try:
        with read_json() as f:
            meta = load_budget.read_json(f, where)
    except load_budget.OverBudget as err:
        raise ToolError(str(err)) from None
    except (OSError, ValueError) as err:  # unreadable, not UTF-8 or not JSON
        raise ToolError(f"{where}: not a readable JSON file ({type(err).__name__}: {err}); expected "
                        f"{LABELS_EXAMPLE}") from None
    if not isinstance(meta, dict) or "labels" not in meta:
        raise ToolError(f"{where}: no \"labels\" entry; expected {LABELS_EXAMPLE}")
    entries = meta["labels"]
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ToolError(f"{where}: \"labels\" is a {type(entries).__name__}; expected {LABELS_EXAMPLE}")
    labels: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ToolError(f"{where}: entry {i} is {json.dumps(entry)[:60]}; expected [\"path/img.png\", label]")
        labels[entry[0].replace("\\", "/")] = entry[1]
    check_label_values(labels, where)
    return labels


def check_label_values(labels: dict[str, Any], where: str) -> None:
    """All class indices >= 0, or all number vectors of one length (the first entry sets the kind)."""
    first_name, first = next(iter(labels.items()), (None, None))
    for name, label in labels.items():
        is_class = isinstance(label, int) and not isinstance(label, bool) and label >= 0
        is_vector = isinstance(label, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in label)
        if not (is_class or is_vector):
            raise ToolError(f"{where}: label of {name} is {json.dumps(label)[:40]}; use a class index >= 0 or a "
                            f"list of numbers")
        if is_vector and isinstance(first, list) and len(label) != len(first):
            raise ToolError(f"{where}: label of {name} has {len(label)} values but that of {first_name} has "
                            f"{len(first)}; give every image a label vector of one length")
        problem = label_range.label_problem(label)
        if problem is not None:
            raise ToolError(f"{where}: label of {name}: {problem}; {label_range.FIX}")
        if is_class != (isinstance(first, int) and not isinstance(first, bool)):
            raise ToolError(f"{where}: label of {name} is {json.dumps(label)[:40]} but that of {first_name} is "
                            f"{json.dumps(first)[:40]}; use class indices for all images or vectors for all")


def labels_for(names: list[str], labels: dict[str, Any], where: str) -> list[Any]:
    """Each image's label; with a labels file every image must have one (a misspelt entry is named)."""
    if not labels:
        return [None] * len(names)
    missing = [name for name in names if name not in labels]
    if missing:
        unknown = sorted(set(labels) - set(names))
        hint = f" ({where} names {unknown[0]}, which is not an image here: misspelt?)" if unknown else ""
        raise ToolError(f"{where}: no label for {missing[0]} ({len(missing)} of {len(names)} images unlabelled)"
                        f"{hint}; label every image or set \"labels\" to null")
    return [labels[name] for name in names]


def open_image_folder(path: str, exclude: str | None = None) -> tuple[int, list[SourceImage]]:
    rel_paths = list_folder_images(path, exclude)
    labels_path = os.path.join(path, LABELS_FILE)
    labels = read_source_labels((lambda: open(labels_path, "rb")) if os.path.isfile(labels_path) else None, labels_path)
    items = []
    for rel, label in zip(rel_paths, labels_for(rel_paths, labels, labels_path)):
        full = os.path.join(path, rel)
        items.append(SourceImage(full, _bind_read(lambda p=full: open(p, "rb"), full), label))
    return len(items), items


def list_folder_images(path: str, exclude: str | None) -> list[str]:
    """Sorted relative paths of the images under path, leaving out --dest (and its temp copies) if inside."""
    skip = os.path.abspath(exclude) if exclude is not None else None

    def is_output(full: str) -> bool:
        base = os.path.basename(skip) if skip else ""
        return skip is not None and (full == skip or (os.path.dirname(full) == os.path.dirname(skip)
                                                      and os.path.basename(full).startswith(f".{base}.")))

    def unreadable(err: OSError) -> None:
        raise ToolError(f"--source {path}: cannot read {err.filename} ({(err.strerror or str(err)).lower()}); "
                        f"check its permissions")

    rel_paths = []
    for root, dirs, files in os.walk(path, onerror=unreadable):
        dirs[:] = [d for d in dirs if not is_output(os.path.abspath(os.path.join(root, d)))]
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not is_output(os.path.abspath(os.path.join(root, f))):
                _refuse_special_file(os.path.join(root, f))
                rel_paths.append(os.path.relpath(os.path.join(root, f), path).replace(os.sep, "/"))
    return sorted(rel_paths)


def _refuse_special_file(full: str) -> None:
    """A FIFO named like an image would block the reader forever; a dangling link is left to the decoder."""
    try:
        kind = special_file_kind(full)
    except OSError:
        return
    if kind is not None:
        raise ToolError(f"--source: {full} is {kind}, not an image file; remove it from the source folder")


@contextlib.contextmanager
def open_zip(path: str) -> Iterator[tuple[int, list[SourceImage]]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ToolError(f"--source {path}: not a readable zip archive ({err})") from None
    with archive:
        _check_zip_members(archive, path)
        names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_EXTENSIONS))
        where = f"{path}/{LABELS_FILE}"
        has_labels = LABELS_FILE in archive.namelist()
        labels = read_source_labels((lambda: archive.open(LABELS_FILE)) if has_labels else None, where)
        items = [SourceImage(f"{path}/{n}", _bind_read(lambda n=n: archive.open(n), f"{path}/{n}"), label)
                 for n, label in zip(names, labels_for(names, labels, where))]
        yield len(items), items


def _check_zip_members(archive: zipfile.ZipFile, path: str) -> None:
    """Declared sizes and compression ratios, before anything is inflated (a zip bomb is refused unread)."""
    try:
        load_budget.check_image_zip(archive, f"--source {path}", lambda n: n.lower().endswith(IMAGE_EXTENSIONS),
                                    LABELS_FILE)
    except load_budget.OverBudget as err:
        raise ToolError(str(err)) from None


def _bind_read(opener: Callable[[], Any], name: str) -> Callable[[], np.ndarray]:
    return lambda: decode_image(opener, name)


def open_cifar10(path: str) -> tuple[int, list[SourceImage]]:
    """The five training batches of the CIFAR-10 python tarball (labels kept)."""
    images, labels = [], []
    with tarfile.open(path) as tar:
        batches = sorted((m for m in _bounded_members(tar, path) if re.search(r"(^|/)data_batch_\d+$", m.name)),
                         key=lambda m: int(m.name.rsplit("_", 1)[1]))
        if not batches:
            raise ToolError(f"--source {path}: tarball has no data_batch_N files; expected cifar-10-python.tar.gz")
        for member in batches:
            if not member.isfile():  # a link (maybe to a missing member), FIFO or device: no batch data
                raise ToolError(f"--source {path}: {member.name} in the tarball is not a regular file (a link or "
                                f"special file); use the original cifar-10-python.tar.gz")
            batch = _load_array_pickle(tar.extractfile(member).read(), f"{path}:{member.name}")
            data = np.asarray(_pick(batch, "data"), dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(_pick(batch, "labels"), dtype=np.int64))
    images_arr, labels_arr = np.concatenate(images), np.concatenate(labels)
    _check_class_labels(images_arr, labels_arr, path)
    items = [SourceImage(f"{path}[{i}]", (lambda i=i: images_arr[i]), int(labels_arr[i])) for i in range(len(images_arr))]
    return len(items), items


def _bounded_members(tar: tarfile.TarFile, path: str) -> list[tarfile.TarInfo]:
    """The tarball's members, listing stopped (and refused) as soon as sizes exceed what CIFAR-10 ever has: a
    compressed tarball of zeros would otherwise be inflated whole just to list it."""
    members = []
    while True:
        member = tar.next()
        if member is None:
            return members
        too_far = member.offset_data + member.size > load_budget.MAX_TAR_BYTES
        if too_far or member.size > load_budget.MAX_TAR_MEMBER_BYTES:
            raise ToolError(f"--source {path}: member {member.name} ({member.size} bytes) goes past the "
                            f"{load_budget.MAX_TAR_BYTES} bytes a CIFAR-10 tarball unpacks to; use the original "
                            f"cifar-10-python.tar.gz")
        members.append(member)


def _pick(batch: Any, key: str) -> Any:
    if not isinstance(batch, dict):
        raise ToolError(f"CIFAR batch is a {type(batch).__name__}, expected a dict with data and labels")
    for k in (key, key.encode("ascii")):
        if k in batch:
            return batch[k]
    raise ToolError(f"CIFAR batch has no {key!r} entry; is this the python version of CIFAR-10?")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can never run code here."""

    ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar"}
    MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray"}

    NUMPY = load_budget.numpy_globals()  # array sizes come from the data, never from a constructor argument

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles store bytes this way; pure data
            return super().find_class(module, name)
        if module in self.MODULES and name in self.ALLOWED:
            return self.NUMPY[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _load_array_pickle(data: bytes, where: str) -> Any:
    try:
        load_budget.scan_pickle(data, where)
        batch = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        load_budget.check_tree(batch, where)
        return batch
    except Exception as err:  # noqa: BLE001
        raise ToolError(f"{where}: cannot read CIFAR batch ({load_budget.first_line(err)})") from None


def open_mnist(path: str) -> tuple[int, list[SourceImage]]:
    """MNIST images (28x28, padded to 32x32 as upstream) with labels from the matching labels-idx1 file."""
    labels_path = path.replace("images-idx3", "labels-idx1")
    if not os.path.isfile(labels_path):
        raise ToolError(f"--source {path}: labels file {labels_path} not found; put it next to the images file")
    images = _read_idx(path, expected_magic=2051, ndim=3)
    labels = _read_idx(labels_path, expected_magic=2049, ndim=1).astype(np.int64)
    _check_class_labels(images, labels, path)
    images = np.pad(images, [(0, 0), (2, 2), (2, 2)], mode="constant", constant_values=0)
    items = [SourceImage(f"{path}[{i}]", (lambda i=i: images[i]), int(labels[i])) for i in range(len(images))]
    return len(items), items


def _read_idx(path: str, expected_magic: int, ndim: int) -> np.ndarray:
    """The IDX array, inflated no further than its header's size (itself bounded): a gzip bomb is refused after
    reading at most that many bytes plus one."""
    header_size = 4 + 4 * ndim
    try:
        load_budget.check_file_size(path, load_budget.MAX_IDX_BYTES)
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size or int.from_bytes(header[:4], "big") != expected_magic:
                raise ToolError(f"{path}: not an MNIST IDX file (expected magic number {expected_magic})")
            shape = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
            size = int(np.prod(shape, dtype=object))
            if size > load_budget.MAX_IDX_BYTES:
                raise ToolError(f"{path}: header declares {shape} ({size} bytes), more than the "
                                f"{load_budget.MAX_IDX_BYTES} an MNIST-format file may hold; the file is forged")
            raw = f.read(size + 1)
    except load_budget.OverBudget as err:
        raise ToolError(str(err)) from None
    except (OSError, EOFError, zlib.error) as err:
        raise ToolError(f"{path}: not a readable gzip file ({err})") from None
    if len(raw) != size:
        state = "truncated" if len(raw) < size else "followed by extra data (a forged or concatenated file)"
        raise ToolError(f"{path}: header says {shape} ({size} bytes), the data is {state}; use the original file")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _check_class_labels(images: np.ndarray, labels: np.ndarray, path: str) -> None:
    if labels.shape != (images.shape[0],):
        raise ToolError(f"{path}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ToolError(f"{path}: class labels must be in 0..9, found {labels.min()}..{labels.max()}")


@contextlib.contextmanager
def open_lmdb(path: str) -> Iterator[tuple[int, Iterable[SourceImage]]]:
    try:
        import lmdb  # optional dependency, only for LSUN
    except ImportError:
        raise ToolError(f"--source {path} is an LMDB database; reading it needs the lmdb package: pip install lmdb") from None
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=1)
    except lmdb.Error as err:
        raise ToolError(f"--source {path}: cannot open LMDB ({err})") from None
    with env, env.begin(write=False, buffers=True) as txn:  # buffers: records are sized before they are copied
        total = env.stat()["entries"]  # entries of the main (unnamed) database

        def items() -> Iterator[SourceImage]:
            for key, value in txn.cursor():
                name = f"{path}[{bytes(key).decode('utf-8', 'replace')}]"
                if len(value) > load_budget.MAX_IMAGE_FILE_BYTES:
                    raise ToolError(f"{name}: a record of {len(value)} bytes, more than the "
                                    f"{load_budget.MAX_IMAGE_FILE_BYTES} one image may take; the database is forged")
                yield SourceImage(name, _bind_read(lambda v=bytes(value): io.BytesIO(v), name))

        yield total, items()


# ----------------------------------------------------------------------------------------------------------------
# Writers: a zip or a directory built under a temporary name, renamed into place only on success.


class DatasetWriter:
    def __init__(self, add: Callable[[str, bytes], None]):
        self.add = add


@contextlib.contextmanager
def open_writer(dest: str, force: bool) -> Iterator[DatasetWriter]:
    if is_zip_path(dest):
        with atomic_write(dest, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            yield DatasetWriter(lambda name, data: archive.writestr(name, data))
        return
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(dest)) + ".", suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; give the permissions mkdir would
    try:
        yield DatasetWriter(lambda name, data: _write_file(os.path.join(tmp, name), data))
        if os.path.isdir(dest):
            shutil.rmtree(dest)  # empty, or --force was given (checked before any work)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_file(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

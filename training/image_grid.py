"""Snapshot image grids (reals.png, fakes_init.png, fakesNNNNNN.png), laid out as upstream's."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from dnnlib.util import atomic_write


# The default cap: upstream's rule gives 32x32 = 1024 images at 32-64 px, whose G_ema pass and PNG
# dominated a small run's maintenance (docs/performance.md); train.py --grid=WxH sets any size.
MAX_AUTO_GRID = (8, 8)


def grid_size(resolution_w: int, resolution_h: int) -> tuple[int, int]:
    """Upstream's grid width/height in images: about 7680x4320 px, between 7x4 and 32x32 images."""
    gw = int(np.clip(7680 // resolution_w, 7, 32))
    gh = int(np.clip(4320 // resolution_h, 4, 32))
    return gw, gh


def snapshot_grid_size(resolution_w: int, resolution_h: int, cap: tuple[int, int] = MAX_AUTO_GRID) -> tuple[int, int]:
    """The default snapshot grid: upstream's layout, at most `cap` images wide and high."""
    gw, gh = grid_size(resolution_w, resolution_h)
    return min(gw, cap[0]), min(gh, cap[1])


def setup_snapshot_image_grid(dataset: Any, random_seed: int = 0,
                              grid: Optional[tuple[int, int]] = None) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Pick the dataset images shown in reals.png and the labels used for the fakes grid.

    Unlabelled: a seeded permutation, repeated to fill the grid. Labelled: row y shows images of
    the (y mod #labels)-th label, rotating through that label's images so rows differ.
    """
    rnd = np.random.RandomState(random_seed)
    gw, gh = grid if grid is not None else snapshot_grid_size(dataset.image_shape[2], dataset.image_shape[1])
    if not dataset.has_labels:
        order = rnd.permutation(len(dataset))
        indices = [int(order[i % len(order)]) for i in range(gw * gh)]
    else:
        by_label: dict[tuple, list[int]] = {}
        for idx in range(len(dataset)):
            key = tuple(np.asarray(dataset.get_label(idx)).flatten().tolist())
            by_label.setdefault(key, []).append(idx)
        keys = sorted(by_label)
        for key in keys:
            rnd.shuffle(by_label[key])
        indices = []
        for y in range(gh):
            members = by_label[keys[y % len(keys)]]
            indices += [members[x % len(members)] for x in range(gw)]
            by_label[keys[y % len(keys)]] = members[gw:] + members[:gw]
    images, labels = zip(*[dataset[i] for i in indices])
    return (gw, gh), np.stack(images), np.stack(labels)


def save_image_grid(images: np.ndarray, path: str, drange: Sequence[float], grid: tuple[int, int]) -> None:
    """Tile N images [N,C,H,W] into a gh x gw grid, map `drange` to 0..255, write PNG atomically."""
    lo, hi = drange
    images = np.asarray(images, dtype=np.float32)
    images = np.rint((images - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    gw, gh = grid
    n, c, h, w = images.shape
    if n != gw * gh:
        raise ValueError(f"save_image_grid: {n} images do not fill a {gw}x{gh} grid")
    tiled = images.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    if c == 1:
        picture = Image.fromarray(tiled[:, :, 0], "L")
    elif c == 3:
        picture = Image.fromarray(tiled, "RGB")
    else:
        raise ValueError(f"save_image_grid: cannot save {c}-channel images")
    with atomic_write(path, "wb") as f:
        picture.save(f, format="PNG")

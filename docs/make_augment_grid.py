"""Render docs/images/augment_grid.png: one real emoji under each augmentation at p=1.

Usage: python docs/make_augment_grid.py [--data datasets/emoji-smileys] [--out docs/images/augment_grid.png]
Rows = augmentations (plus the bgc preset), columns = independent draws with a fixed seed.
"""

from __future__ import annotations

import pathlib
import sys

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import dnnlib  # noqa: E402
from training.augment import ALL_AUGMENTATIONS, AUGPIPE_SPECS, AugmentPipe  # noqa: E402

ROWS = ("original",) + ALL_AUGMENTATIONS + ("bgc",)


def load_image(data_dir: pathlib.Path, index: int) -> torch.Tensor:
    files = sorted(data_dir.glob("*.png"))
    if not files:
        raise click.ClickException(f"--data {data_dir}: no PNG images found; point it at an image folder")
    rgb = np.asarray(PIL.Image.open(files[index % len(files)]).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None] / 127.5 - 1


def augment_row(image: torch.Tensor, row: str, columns: int) -> torch.Tensor:
    batch = image.repeat(columns, 1, 1, 1)
    if row == "original":
        return batch
    pipe = AugmentPipe(**(AUGPIPE_SPECS[row] if row in AUGPIPE_SPECS else {row: 1}))
    pipe.p.fill_(1)
    return pipe(batch)


def to_grid(rows: list[torch.Tensor]) -> np.ndarray:
    grid = torch.stack(rows)  # [R, C, 3, H, W]
    r, c, ch, h, w = grid.shape
    grid = grid.permute(0, 3, 1, 4, 2).reshape(r * h, c * w, ch)
    return ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


@click.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=pathlib.Path),
              default=pathlib.Path("datasets/emoji-smileys"), show_default=True, help="Folder of PNG images")
@click.option("--out", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              default=pathlib.Path("docs/images/augment_grid.png"), show_default=True)
@click.option("--index", type=int, default=0, show_default=True, help="Which image of the folder")
@click.option("--columns", type=click.IntRange(1, 32), default=8, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def main(data_dir: pathlib.Path, out: pathlib.Path, index: int, columns: int, seed: int) -> None:
    torch.manual_seed(seed)
    image = load_image(data_dir, index)
    grid = to_grid([augment_row(image, row, columns) for row in ROWS])
    out.parent.mkdir(parents=True, exist_ok=True)
    with dnnlib.util.atomic_write(str(out), "wb") as f:
        PIL.Image.fromarray(grid, "RGB").save(f, format="PNG")
    print(f"wrote {out} ({len(ROWS)} rows: {', '.join(ROWS)})")


if __name__ == "__main__":
    main()

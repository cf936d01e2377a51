"""The two pictures of the latent-continuity report, drawn with Pillow.

interpolation.png (the layout of FakeCLR Fig. 1): per network a caption, a row of interpolation frames, and
under every step the difference thumbnail |frame[i + 1] - frame[i]| with its mean; steps above the jump
threshold are framed in red.
inversion.png: one row per real image: the target, then each network's projection, under a caption row.
Images below 64 px are enlarged (nearest neighbour) so that the pictures stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from dnnlib import util

MIN_CELL = 64
CAPTION = 14  # px of a caption line (Pillow's default bitmap font is 11 px high)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
FLAG = (220, 0, 0)


@dataclass
class InterpolationRow:
    label: str
    frames: torch.Tensor  # [K + 1, C, H, W] in [0, 1]
    diffs: np.ndarray  # [K]


def _to_image(img: torch.Tensor, size: int) -> PIL.Image.Image:
    """[C, H, W] in [0, 1] -> RGB image of size x size."""
    array = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    image = PIL.Image.fromarray(array, "RGB")
    return image if image.size == (size, size) else image.resize((size, size), PIL.Image.NEAREST)


def cell_size(resolution: int) -> int:
    return max(resolution, MIN_CELL)


def interpolation_figure(rows: list[InterpolationRow], threshold: float) -> PIL.Image.Image:
    num_frames, _, h, _ = rows[0].frames.shape
    cell = cell_size(h)
    thumb = cell // 2
    block = CAPTION + cell + 4 + thumb + CAPTION + 8
    canvas = PIL.Image.new("RGB", (num_frames * cell + thumb, block * len(rows)), BACKGROUND)
    draw = PIL.ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = r * block
        draw.text((2, top + 1), f"{row.label}: {int((row.diffs > threshold).sum())} of {len(row.diffs)} steps "
                                f"> {threshold:g}, max {row.diffs.max():.3f}", fill=TEXT)
        for i, frame in enumerate(row.frames):
            canvas.paste(_to_image(frame, cell), (i * cell, top + CAPTION))
        for i, diff in enumerate(row.diffs):
            x = (i + 1) * cell - thumb // 2  # under the boundary between frames i and i + 1
            y = top + CAPTION + cell + 4
            difference = (row.frames[i + 1] - row.frames[i]).abs().mean(dim=0, keepdim=True)
            canvas.paste(_to_image(difference, thumb), (x, y))
            if diff > threshold:
                draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline=FLAG, width=2)
            draw.text((x, y + thumb + 1), f"{diff:.2f}", fill=FLAG if diff > threshold else TEXT)
    return canvas


def inversion_figure(targets: torch.Tensor, projections: dict[str, torch.Tensor]) -> PIL.Image.Image:
    """targets [N, C, H, W] and {label: projections [N, C, H, W]}, all in [0, 1]."""
    n, _, h, _ = targets.shape
    cell = cell_size(h)
    columns = [("target", targets)] + list(projections.items())
    canvas = PIL.Image.new("RGB", (cell * len(columns), CAPTION + cell * n), BACKGROUND)
    draw = PIL.ImageDraw.Draw(canvas)
    for c, (label, images) in enumerate(columns):
        draw.text((c * cell + 2, 1), label[: cell // 6], fill=TEXT)
        for i in range(n):
            canvas.paste(_to_image(images[i], cell), (c * cell, CAPTION + i * cell))
    return canvas


def save_figure(image: PIL.Image.Image, path: str) -> None:
    with util.atomic_write(path, "wb") as f:
        image.save(f, format="PNG")

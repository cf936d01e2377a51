"""A line plot drawn with Pillow alone (matplotlib is not a dependency): axes, ticks, labels, legend.

Used by scripts/compare_methods.py for FID-vs-kimg curves.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from dnnlib.util import atomic_write

PLOT_SIZE = (960, 560)
EXTRA_COLOURS = [(255, 127, 14), (140, 86, 75), (227, 119, 194), (23, 190, 207), (31, 119, 180), (44, 160, 44)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text(draw: Any, xy: tuple[float, float], text: str, font: Any, anchor: str = "la", fill: Any = "black") -> None:
    """draw.text with the anchor applied by hand ('l'/'m'/'r' + 't'/'m'/'a'), so bitmap fonts work too."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy
    x -= {"l": left, "m": (left + right) / 2, "r": right}[anchor[0]]
    y -= {"t": top, "m": (top + bottom) / 2, "a": 0}[anchor[1]]
    draw.text((x, y), text, fill=fill, font=font)


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] (steps 1, 2, 2.5 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value < hi + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def draw_plot(series: dict[str, list[tuple[float, float]]], path: str, title: str, ylabel: str, xlabel: str,
              colours: Optional[dict[str, tuple[int, int, int]]] = None, size: tuple[int, int] = PLOT_SIZE,
              bands: Optional[dict[str, list[tuple[float, float, float]]]] = None) -> None:
    """Line plot of (x, y) points per named series with axes, ticks, labels and a legend; PNG written atomically.

    `colours` fixes a series' colour by name (so a method keeps its colour across plots); others take
    the next colour of EXTRA_COLOURS. `bands` adds a pale filled band (x, low, high) behind a series,
    e.g. mean ± std over seeds.
    """
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    bands = bands or {}
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    points += [(x, y) for band in bands.values() for x, lo, hi in band for y in (lo, hi)
               if math.isfinite(x) and math.isfinite(y)]
    xs = [x for x, _ in points] or [0.0, 1.0]
    ys = [y for _, y in points] or [0.0, 1.0]
    xticks = nice_ticks(0.0, max(xs) if max(xs) > 0 else 1.0)
    pad = (max(ys) - min(ys)) * 0.05 or abs(max(ys)) * 0.05 or 1.0
    yticks = nice_ticks(min(ys) - pad, max(ys) + pad)
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]
    label_width = max(draw.textlength(_tick_label(y), font=small) for y in yticks)
    legend_width = max([draw.textlength(name, font=font) for name in series] or [0.0])
    left, right, top, bottom = int(label_width) + 50, int(legend_width) + 80, 50, 70
    plot = (left, top, width - right, height - bottom)

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = plot[0] + (x - x0) / (x1 - x0) * (plot[2] - plot[0])
        py = plot[3] - (y - y0) / (y1 - y0) * (plot[3] - plot[1])
        return px, py

    grid = (225, 225, 225)
    for x in xticks:
        px, _ = to_px(x, y0)
        draw.line([(px, plot[1]), (px, plot[3])], fill=grid)
        draw.line([(px, plot[3]), (px, plot[3] + 5)], fill="black")
        _text(draw, (px, plot[3] + 8), _tick_label(x), small, "mt")
    for y in yticks:
        _, py = to_px(x0, y)
        draw.line([(plot[0], py), (plot[2], py)], fill=grid)
        draw.line([(plot[0] - 5, py), (plot[0], py)], fill="black")
        _text(draw, (plot[0] - 8, py), _tick_label(y), small, "rm")
    draw.rectangle(plot, outline="black")
    _text(draw, ((plot[0] + plot[2]) / 2, height - 22), xlabel, font, "mm")
    _text(draw, (width / 2, 22), title, font, "mm")
    label = Image.new("RGB", (plot[3] - plot[1], 24), "white")
    _text(ImageDraw.Draw(label), (label.width / 2, 12), ylabel, font, "mm")
    label = label.rotate(90, expand=True)
    image.paste(label, (14, plot[1]))

    extra = iter(EXTRA_COLOURS)
    chosen = {name: (colours or {}).get(name) or next(extra, (0, 0, 0)) for name in series}
    for name, band in bands.items():
        _draw_band(image, [(to_px(x, lo), to_px(x, hi)) for x, lo, hi in sorted(band)
                           if math.isfinite(lo) and math.isfinite(hi)], chosen.get(name, (0, 0, 0)))
    draw = ImageDraw.Draw(image)
    for i, (name, pts) in enumerate(series.items()):
        colour = chosen[name]
        pts = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
        pixels = [to_px(x, y) for x, y in pts]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=3, joint="curve")
        for px, py in pixels:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour, outline="white")
        ly = plot[1] + 12 + 26 * i
        lx = plot[2] + 18
        draw.line([(lx, ly), (lx + 30, ly)], fill=colour, width=3)
        draw.ellipse([lx + 11, ly - 4, lx + 19, ly + 4], fill=colour, outline="white")
        _text(draw, (lx + 38, ly), name, font, "lm")
    with atomic_write(path, "wb") as f:
        image.save(f, format="PNG")


def _draw_band(image: Any, edges: list[tuple[tuple[float, float], tuple[float, float]]], colour: tuple) -> None:
    """A filled polygon between the low and high edge, blended 25 % into what is already drawn."""
    from PIL import Image, ImageDraw

    if len(edges) < 2:
        return
    polygon = [low for low, _ in edges] + [high for _, high in reversed(edges)]
    layer = Image.new("RGB", image.size, colour)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=64)
    image.paste(layer, (0, 0), mask)

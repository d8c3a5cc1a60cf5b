"""Helpers shared by the examples: command lines that also work in notebooks,
false-colour derivative images, and line plots drawn with Pillow (so the
examples need nothing beyond jaxrender's own dependencies)."""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Extra command-line arguments read by every example, placed before the real
# ones. A notebook has no command line, so this is how it gets other sizes:
#   JAXRENDER_EXAMPLE_ARGS="--res 32 --iters 20" jupyter lab notebooks/
ARGS_VARIABLE = "JAXRENDER_EXAMPLE_ARGS"


def parse_args(parser, argv=None):
    """`parser.parse_args` for scripts and notebooks alike.

    argv None means the process's command line, except inside a Jupyter
    kernel, whose command line is the kernel's own (`-f kernel.json`), so
    there it means no arguments. The words of $JAXRENDER_EXAMPLE_ARGS come
    first, so explicit arguments override them.
    """
    if argv is None:
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    return parser.parse_args(shlex.split(os.environ.get(ARGS_VARIABLE, "")) + list(argv))


def output_dir(path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def false_colour(values, scale=None) -> np.ndarray:
    """Signed values (H, W) as a diverging colour map: white at zero, red for
    positive, blue for negative, saturated at +-scale (default: the 99th
    percentile of |values|, so a few fireflies do not wash out the rest).
    Returns float32 (H, W, 3) in [0, 1], to be written with `raw=True`."""
    v = np.asarray(values, np.float64)
    if scale is None:
        scale = float(np.percentile(np.abs(v), 99))
    t = np.clip(v / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(v)
    pos, neg = np.maximum(t, 0.0), np.maximum(-t, 0.0)
    rgb = np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1)
    return rgb.astype(np.float32)


_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def plot_curves(path, curves: dict, *, title: str = "", xlabel: str = "iteration",
                log: bool = True, size=(640, 400)) -> None:
    """Writes a line plot of named series (each a sequence of numbers, plotted
    against its index) to a PNG, with a log10 y axis by default."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 45
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    series = {name: np.asarray(v, np.float64) for name, v in curves.items()}
    values = np.concatenate([v[np.isfinite(v) & ((v > 0) if log else True)] for v in series.values()])
    ty = (lambda y: np.log10(y)) if log else (lambda y: y)
    lo, hi = (ty(values.min()), ty(values.max())) if values.size else (0.0, 1.0)
    if log:
        lo, hi = math.floor(lo), math.ceil(hi)
    if hi <= lo:
        hi = lo + 1.0
    n = max(max(len(v) for v in series.values()) - 1, 1)

    def xy(i, y):
        return (left + (width - left - right) * i / n,
                top + (height - top - bottom) * (1.0 - (ty(y) - lo) / (hi - lo)))

    # Axes, with a grid line per decade (log) or five steps (linear).
    ticks = [10.0**e for e in range(int(lo), int(hi) + 1)] if log else np.linspace(lo, hi, 6)
    for y in ticks:
        _, py = xy(0, y)
        draw.line([(left, py), (width - right, py)], fill=(225, 225, 225))
        draw.text((5, py - 6), f"{y:.0e}" if log else f"{y:.3g}", fill="black", font=font)
    step = next(s * 10**k for k in range(10) for s in (1, 2, 5) if s * 10**k * 6 >= n)
    for i in range(0, n + 1, step):
        px, _ = xy(i, 10.0**lo if log else lo)
        draw.text((px - 8, height - bottom + 6), str(i), fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((width / 2 - 30, height - 18), xlabel, fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)
    for k, (name, v) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        points = [xy(i, y) for i, y in enumerate(v) if np.isfinite(y) and (y > 0 or not log)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.text((width - right - 200, top + 8 + 14 * k), f"-- {name}", fill=colour, font=font)
    img.save(path)

"""The PNG grid: one row per person, one column per (model, probe) with the heatmap over the crop."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Panel:
    """One cell: an aligned crop, its heatmap (None: the crop alone) and a caption below it.

    guides: crop rows drawn as thin dashed lines (the eye band and the mask row).
    """

    crop: np.ndarray
    heatmap: np.ndarray | None
    caption: str
    guides: tuple[int, ...] = ()


def write_grid(
    path: Path,
    rows: list[tuple[str, list[Panel]]],
    columns: list[str],
    *,
    title: str = "",
    colormap: str = "jet",
    alpha: float = 0.45,
) -> None:
    """Write the grid as a PNG (folders made as needed); rows: (label, one panel per column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("nothing to draw: no rows")
    for label, panels in rows:
        if len(panels) != len(columns):
            raise ValueError(f"row {label!r} has {len(panels)} panels for {len(columns)} columns")
    cell = 2.3
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(cell * len(columns), cell * 1.22 * len(rows) + 0.6), squeeze=False
    )
    for r, (label, panels) in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel.crop, interpolation="bilinear")
            if panel.heatmap is not None:
                ax.imshow(
                    panel.heatmap, cmap=colormap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear"
                )
            for row in panel.guides:
                ax.axhline(row - 0.5, color="white", linewidth=0.6, linestyle=(0, (3, 3)), alpha=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(panel.caption, fontsize=7.5)
            if r == 0:
                ax.set_title(columns[c], fontsize=8.5)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    # A 256-colour palette, dithered: a third of the size of the RGB file, and the faces keep
    # their gradients (a palette without dithering posterises them).
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)

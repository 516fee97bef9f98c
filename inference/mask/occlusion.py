"""The original system's "Cutout" variant: blank the lower face of an aligned chip.

A masked probe and the enrolled templates it is compared with both lose everything below the
cut, so the comparison rests on the eyes, brows and upper nose alone. Where the cut starts and
what fills it matter more than the strategy: in the prototype (dlib ResNet, 150x150 chips),
blanking from row 60 with zeros cost 5.6 points of accuracy even on unmasked pairs, while
cutting from row 76 and filling with the network's mean colour did best.
"""

from __future__ import annotations

import numpy as np

# dlib's face descriptor subtracts this mean (RGB) from its input: filling with it feeds the
# network zeros after normalisation, the least surprising input it can get.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DEFAULT_START_ROW = 76
REFERENCE_SIZE = 150  # start_row is given for the 150x150 dlib chip and scaled for other sizes


def fill_colour(fill: str | tuple[float, float, float]) -> np.ndarray:
    if isinstance(fill, str):
        if fill == "mean":
            return np.array(DLIB_MEAN_RGB, dtype=np.float64)
        if fill == "zero":
            return np.zeros(3, dtype=np.float64)
        raise ValueError(f"unknown fill {fill!r}; expected 'mean', 'zero' or an (r, g, b) tuple")
    colour = np.asarray(fill, dtype=np.float64)
    if colour.shape != (3,):
        raise ValueError(f"fill colour must have three components, got {fill!r}")
    return colour


def scaled_start_row(height: int, start_row: int = DEFAULT_START_ROW) -> int:
    """The row where blanking starts in a chip `height` pixels tall."""
    return int(round(start_row * height / REFERENCE_SIZE))


def blank_lower_face(
    crop: np.ndarray,
    *,
    start_row: int = DEFAULT_START_ROW,
    fill: str | tuple[float, float, float] = "mean",
) -> np.ndarray:
    """A copy of an aligned chip with every row from `start_row` (of 150) down filled with one colour.

    `fill`: "mean" (dlib's mean colour), "zero" (black) or an (r, g, b) tuple.
    """
    image = np.asarray(crop)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 chip, got shape {image.shape}")
    row = scaled_start_row(image.shape[0], start_row)
    if not 0 <= row <= image.shape[0]:
        raise ValueError(f"start row {start_row} is outside a {REFERENCE_SIZE}-row reference chip")
    out = image.copy()
    colour = fill_colour(fill)
    if np.issubdtype(out.dtype, np.integer):
        colour = np.clip(np.round(colour), np.iinfo(out.dtype).min, np.iinfo(out.dtype).max)
    out[row:] = colour.astype(out.dtype)
    return out

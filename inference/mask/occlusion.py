"""The original system's "Cutout" variant: blank the lower face of an aligned chip.

A masked probe and the enrolled templates it is compared with both lose everything below the
cut, so the comparison rests on the eyes, brows and upper nose alone. Where the cut starts and
what fills it matter more than the strategy: in the prototype (dlib ResNet, 150x150 chips),
blanking from row 60 with zeros cost 5.6 points of accuracy even on unmasked pairs, while
cutting from row 76 and filling with the network's mean colour did best.

Every embedder has its own alignment template (dlib's 150 px chip, ArcFace's 112 px crop, ...),
and a row scaled from the 150 px chip lands on the eyes of a 112 px ArcFace crop (57 of 112)
instead of below the nose. So the cut is defined by the face, not the chip: it starts
CUT_FRACTION of the way from the eye line to the nose (Face Mesh point 4, just above the tip),
measured on the template's mean mesh positions (inference.align.DERIVED_POSITIONS, the same
positions the mask-aware "mesh" alignment fits). CUT_FRACTION = 1.04 puts dlib's cut exactly on
row 76, as before (any value in [1.022, 1.060) does); on ARCFACE_112 it is row 74, between the
nose point (73.5) and the tip (76.9) as on dlib's chip. A template without mean mesh positions
(one following ArcFace's five-point convention: eye centres, nose tip, mouth corners) takes the
same proportion from its own five points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inference.templates import AlignTemplate

# dlib's face descriptor subtracts this mean (RGB) from its input: filling with it feeds the
# network zeros after normalisation, the least surprising input it can get.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DEFAULT_START_ROW = 76
REFERENCE_SIZE = 150  # start_row is given for the 150x150 dlib chip and scaled for other sizes

CUT_FRACTION = 1.04  # of the eye-to-nose distance below the eye line
_EYE_CORNERS = (33, 133, 362, 263)  # Face Mesh: both eyes' outer and inner corners
_NOSE = 4  # Face Mesh: the nose just above its tip
# Templates without mean mesh positions, ArcFace convention: the cut as a fraction of the eye
# centres to nose tip distance; on ARCFACE_112 it gives the same row as its mean positions.
_FIVE_POINT_FRACTION = 1.126


def lower_face_row(template: AlignTemplate, fraction: float = CUT_FRACTION) -> int:
    """The first blanked row of a chip aligned to `template`: below the nose, above the mouth."""
    from inference.align import DERIVED_POSITIONS

    positions = DERIVED_POSITIONS.get(template.name)
    if positions is not None and all(i in positions for i in (*_EYE_CORNERS, _NOSE)):
        eyes = float(np.mean([positions[i][1] for i in _EYE_CORNERS]))
        nose = float(positions[_NOSE][1])
    else:
        points = np.asarray(template.points, dtype=np.float64)
        eyes, nose = float(points[:2, 1].mean()), float(points[2, 1])
        fraction = fraction * _FIVE_POINT_FRACTION / CUT_FRACTION
    row = int(round(eyes + fraction * (nose - eyes)))
    height = template.size[1]
    if not 0 < row < height:
        raise ValueError(f"cutout row {row} falls outside the {height}-row {template.name} chip")
    return row


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
    row: int | None = None,
) -> np.ndarray:
    """A copy of an aligned chip with every row from `start_row` (of 150) down filled with one colour.

    `row`: the chip's own first blanked row (`lower_face_row(template)`), instead of `start_row`.
    `fill`: "mean" (dlib's mean colour), "zero" (black) or an (r, g, b) tuple (the embedder's mean).
    """
    image = np.asarray(crop)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 chip, got shape {image.shape}")
    if row is None:
        row = scaled_start_row(image.shape[0], start_row)
    if not 0 <= row <= image.shape[0]:
        raise ValueError(f"start row {start_row} is outside a {REFERENCE_SIZE}-row reference chip")
    out = image.copy()
    colour = fill_colour(fill)
    if np.issubdtype(out.dtype, np.integer):
        colour = np.clip(np.round(colour), np.iinfo(out.dtype).min, np.iinfo(out.dtype).max)
    out[row:] = colour.astype(out.dtype)
    return out

"""Where a heatmap's mass lies on an aligned face: the eye band against the mask region.

Every template has mean mesh positions (inference.align.derived_positions), so the bands are
defined by the face, not by fixed rows of one chip size:
- the mask region: every row from the product's cutout row down (inference.mask.occlusion.
  lower_face_row: just below the nose), the rows a mask hides;
- the eye region: from the top of the brows to the bottom of the eyes, each widened by 15% of
  the eye-to-nose distance: the eyes and eyebrows a masked face still shows.
The rows above the eye band (forehead, hair) and between the bands (nose bridge, upper cheeks)
are reported too, so the four shares add up to one. With a rendered mask, the mass on the mask's
own polygon (in crop pixels) is measured as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.align import derived_positions
from inference.mask.occlusion import lower_face_row
from inference.templates import AlignTemplate

# Face Mesh indices, a subset of inference.align.EYE_MESH_INDICES (which has mean positions).
_BROWS = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
_EYES = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
)  # fmt: skip
_NOSE = 4
EYE_BAND_PAD = 0.15  # of the eye-line-to-nose distance, above the brows and below the eyes


@dataclass(frozen=True)
class FaceBands:
    """Row ranges of a template's crop: eye region [eye_top, eye_bottom), mask region [mask_row, height)."""

    eye_top: int
    eye_bottom: int
    mask_row: int
    height: int


def face_bands(template: AlignTemplate) -> FaceBands:
    positions = derived_positions(template)
    if positions is None:
        raise ValueError(f"template {template.name!r} has no mean mesh positions: no eye band")
    brow_top = min(positions[i][1] for i in _BROWS)
    eye_ys = [positions[i][1] for i in _EYES]
    pad = EYE_BAND_PAD * (positions[_NOSE][1] - float(np.mean(eye_ys)))
    height = template.size[1]
    mask_row = lower_face_row(template)
    top = max(0, int(np.floor(brow_top - pad)))
    bottom = min(mask_row, int(np.ceil(max(eye_ys) + pad)) + 1)
    return FaceBands(eye_top=top, eye_bottom=bottom, mask_row=mask_row, height=height)


def polygon_mask(polygon: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) of the crop pixels inside an image-space polygon, warped by the 2x3 alignment."""
    width, height = size
    points = np.asarray(polygon, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def heat_mass(
    heatmap: np.ndarray, bands: FaceBands, covered: np.ndarray | None = None
) -> dict[str, float | None]:
    """Shares of the heatmap's total mass by band, top to bottom (they sum to 1): above the eye
    band (forehead, hair), the eye region, between (nose bridge, upper cheeks) and the mask
    region; and, when given, on the covered pixels. None when the map is empty (no region
    raised the score)."""
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.shape[0] != bands.height:
        raise ValueError(f"heatmap has {heat.shape[0]} rows, the template {bands.height}")
    total = float(heat.sum())
    names = ("above_eyes", "eye_region", "between", "mask_region", "mask_polygon")
    if total <= 0:
        return dict.fromkeys(names)
    edges = (0, bands.eye_top, bands.eye_bottom, bands.mask_row, bands.height)
    shares: dict[str, float | None] = {
        name: float(heat[start:stop].sum() / total)
        for name, start, stop in zip(names, edges[:-1], edges[1:], strict=False)
    }
    shares["mask_polygon"] = None
    if covered is not None:
        shares["mask_polygon"] = float(heat[np.asarray(covered, dtype=bool)].sum() / total)
    return shares

"""Views, crops, tiles and box overlaps: the image geometry of the detection chain (inference.detect)."""

from __future__ import annotations

import cv2
import numpy as np

# The full-range detector sees a 192 px view of the image; large images are also searched in
# overlapping tiles so a face a few percent of the width still gets a box.
TILE_MIN_SIDE = 640
TILE_GRID_MAX = 3


def shrunk(image: np.ndarray, longest: int) -> tuple[np.ndarray, float]:
    """The image resized so its longer side is at most `longest` (the image itself when it is
    already), and the factor applied."""
    factor = min(1.0, longest / max(image.shape[:2]))
    return (image if factor == 1.0 else resized(image, factor)), factor


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def crop_with_border(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """A side x side crop at (x0, y0), replicating edge pixels where it leaves the image."""
    height, width = image.shape[:2]
    x1, y1 = x0 + side, y0 + side
    inner = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    return cv2.copyMakeBorder(
        inner,
        max(0, -y0),
        max(0, y1 - height),
        max(0, -x0),
        max(0, x1 - width),
        cv2.BORDER_REPLICATE,
    )


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (x0, y0, side) over a large image; none when it is one tile already."""
    short = min(width, height)
    side = min(short, max(TILE_MIN_SIDE, short // 2))
    if max(width, height) < 1.5 * side:
        return []
    nx, ny = _tile_count(width, side), _tile_count(height, side)
    # With the count capped, grow the tiles until they cover the image with a quarter overlap
    # (an extreme panorama may still keep gaps once the tile reaches the short side).
    side = min(short, max(side, int(np.ceil(max(width / (0.75 * nx + 0.25), height / (0.75 * ny + 0.25))))))
    xs = sorted({int(x) for x in np.linspace(0, width - side, nx).round()})
    ys = sorted({int(y) for y in np.linspace(0, height - side, ny).round()})
    return [(x, y, side) for y in ys for x in xs]


def _tile_count(length: int, side: int) -> int:
    # Tiles overlap by a quarter so a face on a seam is whole in one of them.
    count = int(np.ceil((length - side) / (0.75 * side))) + 1 if length > side else 1
    return min(count, TILE_GRID_MAX)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside_box(point: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]

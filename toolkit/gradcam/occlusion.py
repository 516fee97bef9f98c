"""Does the map point at what the similarity rests on? An occlusion check beside each heatmap.

A Grad-CAM map is a first-order guess. Blanking the hottest window of the crop should cost the
cosine with the reference more than blanking the coldest one; when it does not, the map at that
layer says little about this network. The window is a fifth of the crop's side, moved in steps
of a quarter window; the blank takes the network's mean colour (zeros after normalisation, as
the product's cutout fills), so nothing but the missing content changes the input.
"""

from __future__ import annotations

import numpy as np

from inference.embedders.base import Embedder

WINDOW_FRACTION = 0.2


def extreme_windows(heatmap: np.ndarray, side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left (row, column) of the side x side windows of highest and lowest mean heat."""
    heat = np.asarray(heatmap, dtype=np.float64)
    height, width = heat.shape
    if not 0 < side <= min(height, width):
        raise ValueError(f"window side {side} does not fit a {height}x{width} map")
    # Window sums from the summed-area table.
    table = np.pad(heat.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    step = max(1, side // 4)
    grid = sums[::step, ::step]
    hot = np.unravel_index(int(np.argmax(grid)), grid.shape)
    cold = np.unravel_index(int(np.argmin(grid)), grid.shape)
    return (int(hot[0]) * step, int(hot[1]) * step), (int(cold[0]) * step, int(cold[1]) * step)


def occlusion_drops(
    embedder: Embedder, crop: np.ndarray, heatmap: np.ndarray, reference: np.ndarray
) -> dict[str, float]:
    """How much cos(f(crop), reference) falls (single forward, as the Grad-CAM target) when the
    hottest window is blanked, and when the coldest is."""
    side = max(1, int(round(WINDOW_FRACTION * min(crop.shape[:2]))))
    hot, cold = extreme_windows(heatmap, side)
    spec = embedder.spec
    mean = np.asarray(spec.input.mean, dtype=np.float64)
    fill = np.clip(np.round(mean[::-1] if spec.input.channel_order == "bgr" else mean), 0, 255)
    crops = [crop]
    for row, column in (hot, cold):
        blanked = crop.copy()
        blanked[row : row + side, column : column + side] = fill.astype(np.uint8)
        crops.append(blanked)
    reference = np.asarray(reference, dtype=np.float32)
    scores = embedder.embed(crops, flip=False) @ (reference / np.linalg.norm(reference))
    return {
        "occlusion_drop_hot": float(scores[0] - scores[1]),
        "occlusion_drop_cold": float(scores[0] - scores[2]),
    }

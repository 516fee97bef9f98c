"""The detection chain's image geometry: shrunk views, bordered crops, tiles and overlaps."""

import numpy as np

from inference.boxes import TILE_GRID_MAX, crop_with_border, inside_box, iou, shrunk, tiles


def test_a_view_shrinks_only_images_longer_than_asked():
    small = np.zeros((300, 200, 3), np.uint8)
    view, factor = shrunk(small, 960)
    assert view is small and factor == 1.0

    view, factor = shrunk(np.zeros((1000, 4000, 3), np.uint8), 960)
    assert view.shape == (240, 960, 3) and factor == 0.24


def test_a_crop_leaving_the_image_repeats_its_edge():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    crop = crop_with_border(image, -1, -1, 3)
    assert crop.shape == (3, 3, 3)
    assert crop[0, 0, 0] == image[0, 0, 0] and crop[2, 2, 0] == image[1, 1, 0]


def test_tiles_cover_a_large_image_with_overlap_and_a_capped_count():
    width, height = 4000, 3000
    found = tiles(width, height)
    assert 1 < len(found) <= TILE_GRID_MAX**2
    covered = np.zeros((height, width), bool)
    for x, y, side in found:
        covered[y : y + side, x : x + side] = True
    assert covered.all()
    assert tiles(800, 700) == []  # one tile already


def test_overlap_and_containment():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert inside_box(np.array([5.0, 5.0]), (0, 0, 10, 10)) and not inside_box(
        np.array([11.0, 5.0]), (0, 0, 10, 10)
    )

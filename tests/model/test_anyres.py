"""Any-resolution grids, masks and token groups on worked examples."""

import pytest
import torch
from PIL import Image

from xgenmm.model.anyres import anyres_crops, grid_shape, group_index, group_mask, select_best_resolution, stitched_mask
from xgenmm.model.config import RELEASE_GRIDS

SMALL_GRIDS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]


@pytest.mark.parametrize("size,grid", [
    ((640, 480), (2, 2)), ((400, 200), (2, 1)), ((180, 360), (1, 2)), ((800, 220), (3, 1)), ((210, 700), (1, 3)),
    ((300, 300), (2, 2)), ((500, 160), (3, 1)), ((112, 56), (2, 1)), ((150, 200), (2, 2)), ((90, 60), (2, 2)),
    ((1024, 768), (2, 2)),
])
def test_speed_baseline_images_get_their_grids(size, grid):
    assert grid_shape(size, SMALL_GRIDS, 56) == grid


def test_release_grid_choice_keeps_most_resolution():
    # 640x480 on 384 tiles: 2x2 keeps all 307200 pixels; 2x1 would keep 512x384.
    assert select_best_resolution((640, 480), RELEASE_GRIDS) == (768, 768)
    # Upscaled images tie on effective resolution (all of w*h); the least wasted canvas wins.
    assert select_best_resolution((392, 147), RELEASE_GRIDS) == (768, 384)
    assert select_best_resolution((105, 175), RELEASE_GRIDS) == (384, 768)


def test_mask_uses_the_release_float_order():
    # 105x175 on a 1x2 grid (map 54 x 27): 175 * (27/105) = 44.999... in floats -> int 44 ->
    # (54 - 44) // 2 = 5 masked rows top and bottom (exact arithmetic would give 45 -> 4).
    m = stitched_mask((105, 175), 54, 27)
    assert m[:5].sum() == 0 and m[5].all() and m[-5:].sum() == 0 and m[-6].all()


def test_wide_image_masks_rows_top_and_bottom():
    m = stitched_mask((100, 80), 6, 6)  # padding = (6 - int(80 * 0.06)) // 2 = 1
    assert m[0].sum() == 0 and m[-1].sum() == 0 and m[1:-1].all()


def test_release_grouping_is_raster_chunks_not_tiles():
    idx = group_index(2, 2, 3, "release")  # 2x2 tiles of 3x3 -> stitched 6x6
    # group 0 = stitched row 0 (tile 0 row 0, tile 1 row 0) + first half of row 1 (tile 0 row 1)
    assert idx[0].tolist() == [0, 1, 2, 9, 10, 11, 3, 4, 5]
    assert sorted(idx.flatten().tolist()) == list(range(36))


def test_tiles_grouping_is_one_group_per_tile():
    assert group_index(2, 2, 3, "tiles").tolist() == torch.arange(36).view(4, 9).tolist()
    m = group_mask((100, 80), 2, 2, 3, "tiles")
    assert m[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]  # tile 0 holds the top padding row


def test_single_column_grids_group_identically():
    assert torch.equal(group_index(3, 1, 3, "release"), group_index(3, 1, 3, "tiles"))


def test_crops_are_base_then_row_major_tiles():
    img = Image.new("RGB", (112, 56), (10, 20, 30))
    crops = anyres_crops(img, 56, SMALL_GRIDS)
    assert [c.size for c in crops] == [(56, 56)] * 3


def test_anyres_pixels_equal_the_crops_converted_one_by_one():
    # The preprocessing fast path cuts the canvas by reshaping; it must give every crop's bytes,
    # including grids that are not whole tiles (PIL's crop fills past the edge with black).
    import numpy as np

    from xgenmm.model.anyres import anyres_pixels

    g = np.random.default_rng(0)
    for size, tile, grids in [((112, 56), 56, SMALL_GRIDS), ((37, 91), 32, [[32, 64], [64, 32], [64, 64]]),
                              ((64, 64), 32, [[64, 64]]), ((50, 30), 32, [[70, 40], [40, 70]])]:
        img = Image.fromarray(g.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        crops = anyres_crops(img, tile, grids)
        fast = anyres_pixels(img, tile, grids)
        assert fast.shape == (len(crops), tile, tile, 3)
        assert np.array_equal(fast, np.stack([np.asarray(c) for c in crops]))

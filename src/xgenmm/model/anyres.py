"""Any-resolution images exactly as released (reference section 5).

Pixel side: choose a grid, resize-and-pad onto it, cut it into tiles; the crops are the whole
image resized plus the tiles (base crop first). Token side: the tiles' feature maps are
stitched into one map, letterbox padding is masked, and the map is cut into groups of one
crop's worth of tokens, each of which the resampler reads on its own.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image


def select_best_resolution(image_size: tuple[int, int], grids: list) -> tuple[int, int]:
    """The grid (W, H) that keeps the most of the image's resolution, ties broken by the
    least wasted canvas."""
    w, h = image_size
    best, best_effective, best_wasted = None, -1, math.inf
    for gw, gh in grids:
        scale = min(gw / w, gh / h)
        effective = min(int(w * scale) * int(h * scale), w * h)
        wasted = gw * gh - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (gw, gh), effective, wasted
    return best


def grid_shape(image_size: tuple[int, int], grids: list, tile: int) -> tuple[int, int]:
    """(cols, rows) of tiles for an image of `image_size` = (w, h)."""
    gw, gh = select_best_resolution(image_size, grids)
    return gw // tile, gh // tile


def resize_and_pad(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Scale to fit `target` (the other side = min(ceil(side * scale), target)) and paste
    centred on a black canvas."""
    w, h = image.size
    tw, th = target
    scale_w, scale_h = tw / w, th / h
    if scale_w < scale_h:
        nw, nh = tw, min(math.ceil(h * scale_w), th)
    else:
        nw, nh = min(math.ceil(w * scale_h), tw), th
    resized = image.resize((nw, nh), Image.BICUBIC)
    canvas = Image.new("RGB", (tw, th), (0, 0, 0))
    canvas.paste(resized, ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def anyres_crops(image: Image.Image, tile: int, grids: list) -> list[Image.Image]:
    """[whole image resized to tile x tile] + the grid's tiles in row-major order."""
    target = select_best_resolution(image.size, grids)
    canvas = resize_and_pad(image, target)
    tiles = [
        canvas.crop((x, y, x + tile, y + tile)) for y in range(0, target[1], tile) for x in range(0, target[0], tile)
    ]
    return [image.resize((tile, tile), Image.BICUBIC)] + tiles


def anyres_pixels(image: Image.Image, tile: int, grids: list) -> np.ndarray:
    """The crops of `anyres_crops` as one uint8 array [1 + rows * cols, tile, tile, 3], equal
    to converting each crop: the canvas is converted once and cut by reshaping, where a PIL
    crop and an array conversion per tile cost most of an image's preprocessing. A tile past
    the canvas's edge is black there, as PIL's crop makes it."""
    target = select_best_resolution(image.size, grids)
    canvas = np.asarray(resize_and_pad(image, target), dtype=np.uint8)
    rows, cols = -(-target[1] // tile), -(-target[0] // tile)
    if canvas.shape[:2] != (rows * tile, cols * tile):
        canvas = np.pad(canvas, ((0, rows * tile - canvas.shape[0]), (0, cols * tile - canvas.shape[1]), (0, 0)))
    tiles = canvas.reshape(rows, tile, cols, tile, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, tile, tile, 3)
    base = np.asarray(image.resize((tile, tile), Image.BICUBIC), dtype=np.uint8)
    return np.concatenate([base[None], tiles])


def stitched_mask(image_size: tuple[int, int], map_h: int, map_w: int) -> torch.Tensor:
    """[map_h, map_w] mask (1 = image, 0 = letterbox padding) of a stitched feature map.

    The float evaluation order is the release's: the ratio map_w / w is computed first and
    then multiplied (exact rational arithmetic gives another integer for a few sizes)."""
    w, h = image_size
    mask = torch.ones(map_h, map_w)
    if w / h > map_w / map_h:
        padding = (map_h - int(h * (map_w / w))) // 2
        if padding > 0:
            mask[:padding] = 0
            mask[map_h - padding:] = 0
    else:
        padding = (map_w - int(w * (map_h / h))) // 2
        if padding > 0:
            mask[:, :padding] = 0
            mask[:, map_w - padding:] = 0
    return mask


@lru_cache(maxsize=256)
def group_index(rows: int, cols: int, side: int, grouping: str) -> torch.Tensor:
    """[rows*cols, side*side] index into the tiles' tokens flattened as [tile, token].

    The tiles' [side, side] maps are stitched into one [rows*side, cols*side] map. `release`
    reproduces THE QUIRK of the released code: the stitched [C, H, W] memory is reshaped into
    rows*cols consecutive raster chunks of side*side tokens, which for more than one column
    are not the tiles. The released weights were trained on this grouping. `tiles` gives one
    group per tile (for models trained from scratch)."""
    n = side * side
    if grouping == "tiles":
        return torch.arange(rows * cols * n).view(rows * cols, n)
    if grouping != "release":
        raise ValueError(f"unknown token grouping {grouping!r}")
    width = cols * side
    raster = torch.arange(rows * cols * n)  # position in the stitched map, row-major
    r, c = raster // width, raster % width
    tile = (r // side) * cols + c // side
    local = (r % side) * side + c % side
    return (tile * n + local).view(rows * cols, n)


def group_mask(image_size: tuple[int, int], rows: int, cols: int, side: int, grouping: str) -> torch.Tensor:
    """[rows*cols, side*side] key mask of each token group (1 = attend)."""
    mask = stitched_mask(image_size, rows * side, cols * side)
    if grouping == "release":
        return mask.reshape(rows * cols, side * side)
    # tiles: tile t's mask is its block of the stitched map
    return mask.view(rows, side, cols, side).permute(0, 2, 1, 3).reshape(rows * cols, side * side)

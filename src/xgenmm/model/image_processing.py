"""Images to crops: loading (any mode to RGB, with errors that name the source), the three
modes (squash, pad, anyres) and normalisation to [-1, 1] (bicubic, mean/std 0.5), with PIL
and torch only. Bit-exact with the released processor."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .anyres import anyres_crops, anyres_pixels, grid_shape
from .config import RELEASE_GRIDS

PROCESSOR_CONFIG = "preprocessor_config.json"


class ImageLoadError(ValueError):
    """An image that cannot be used: corrupt, truncated, empty or zero-sized."""


def load_image(source, name: str | None = None) -> Image.Image:
    """Open `source` (a path, bytes or a PIL image) as an RGB image. Raises ImageLoadError
    naming `name` (or the path) when it cannot be decoded or has no pixels."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise ImageLoadError(f"{label}: empty image data")
            image = Image.open(io.BytesIO(bytes(source)))
        else:
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"{label}: image file not found")
            if path.stat().st_size == 0:
                raise ImageLoadError(f"{label}: empty image file")
            image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ImageLoadError(f"{label}: cannot decode image ({e})") from e
    if image.width == 0 or image.height == 0:
        raise ImageLoadError(f"{label}: zero-sized image {image.size}")
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparent images on white rather than on whatever the hidden colour is.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            image = image.convert("RGB")
    return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """[3, H, W] float in [-1, 1]: x / 255, then (x - 0.5) / 0.5, in that order."""
    return to_tensors([image])[0]


def to_tensors(images: list[Image.Image]) -> torch.Tensor:
    """[N, 3, H, W] (contiguous) of same-sized images, each as `to_tensor` gives it: one
    conversion for all of an image's crops instead of a handful of small ops per crop."""
    return _normalise(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))


def _normalise(pixels: np.ndarray) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] contiguous float in [-1, 1], as `to_tensor`."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255).sub_(0.5).div_(0.5)


class XGenMMImageProcessor:
    """Crops for the vision tower.

    - squash: one crop, the image resized to image_size x image_size (the base model);
    - pad: one crop, the image padded to a square with the mean colour, then resized;
    - anyres: the whole image resized, then the tiles of the best grid (instruct models).
    """

    def __init__(self, image_size: int = 384, mode: str = "anyres", grids: list | None = None):
        if mode not in ("squash", "pad", "anyres"):
            raise ValueError(f"image processor mode must be squash, pad or anyres, got {mode!r}")
        self.image_size = image_size
        self.mode = mode
        self.grids = [list(g) for g in (grids if grids is not None else RELEASE_GRIDS)]

    def num_crops(self, image_size: tuple[int, int]) -> int:
        if self.mode != "anyres":
            return 1
        cols, rows = grid_shape(tuple(image_size), self.grids, self.image_size)
        return 1 + cols * rows

    def crops(self, image: Image.Image) -> list[Image.Image]:
        s = self.image_size
        if self.mode == "anyres":
            return anyres_crops(image, s, self.grids)
        if self.mode == "pad":
            side = max(image.size)
            canvas = Image.new("RGB", (side, side), (127, 127, 127))
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = canvas
        return [image.resize((s, s), Image.BICUBIC)]

    def preprocess_one(self, image) -> torch.Tensor:
        image = load_image(image)
        if self.mode == "anyres":  # every crop is image_size already: no second resize
            return _normalise(anyres_pixels(image, self.image_size, self.grids))
        # Each crop is resized to image_size again, as the released transform does (a no-op
        # for crops already at that size).
        s = self.image_size
        return to_tensors([c if c.size == (s, s) else c.resize((s, s), Image.BICUBIC) for c in self.crops(image)])

    def __call__(self, images: list) -> dict:
        images = [load_image(im, name=f"image {i}") for i, im in enumerate(images)]
        return {
            "pixel_values": [self.preprocess_one(im) for im in images],
            "image_sizes": [tuple(im.size) for im in images],
        }

    def to_dict(self) -> dict:
        return {
            "image_processor_type": "XGenMMImageProcessor",
            "size": self.image_size,
            "mode": self.mode,
            "grids": self.grids,
            "interpolation": "bicubic",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }

    def save_pretrained(self, directory: str | Path) -> None:
        (Path(directory) / PROCESSOR_CONFIG).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "XGenMMImageProcessor":
        if d.get("image_processor_type") == "Blip3ImageProcessor":
            # The released processor config: size [S, S], squash; grids present for anyres models.
            size = d.get("size", 384)
            size = size[0] if isinstance(size, (list, tuple)) else size
            grids = d.get("grids") or d.get("image_grid_pinpoints")
            return cls(image_size=int(size), mode="anyres" if grids else "squash", grids=grids)
        size = d.get("size", 384)
        return cls(image_size=int(size), mode=d.get("mode", "anyres"), grids=d.get("grids"))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "XGenMMImageProcessor":
        path = Path(directory) / PROCESSOR_CONFIG
        if not path.exists():
            raise FileNotFoundError(f"{path}: no image processor config")
        return cls.from_dict(json.loads(path.read_text()))

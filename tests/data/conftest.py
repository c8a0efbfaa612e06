"""Fixtures for the data tests."""

from __future__ import annotations

import pytest
from datahelpers import make_image, png_bytes


@pytest.fixture()
def image_dir(tmp_path):
    """img0.png .. img4.png of assorted sizes (1-, 2- and 4-tile anyres grids)."""
    sizes = [(100, 60), (60, 100), (64, 64), (130, 120), (200, 70)]
    for i, (w, h) in enumerate(sizes):
        make_image(w, h, seed=i).save(tmp_path / f"img{i}.png")
    (tmp_path / "corrupt.png").write_bytes(png_bytes(40, 40)[:60])  # truncated PNG
    return tmp_path


@pytest.fixture()
def processor(tiny_processor):
    return tiny_processor

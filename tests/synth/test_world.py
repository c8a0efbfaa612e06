"""The world's facts are the image's facts: colours, cells, boxes and words as stated."""

from __future__ import annotations

import random

import numpy as np
import pytest

from xgenmm.synth.render import render_scene
from xgenmm.synth.world import COLOURS, PRESETS, SHAPES, TEXT_COLOUR, Scene, WorldConfig, cell_box, sample_scene


def _scenes(preset: str, n: int, seed: int = 0) -> list[Scene]:
    rng = random.Random(seed)
    return [sample_scene(rng, PRESETS[preset]) for _ in range(n)]


def _mask(arr: np.ndarray, rgb) -> np.ndarray:
    return np.all(arr == np.array(rgb, dtype=np.uint8), axis=-1)


def test_object_pixels_have_the_stated_colour_only_inside_the_stated_box():
    for scene in _scenes("standard", 40):  # unique colours: a colour's pixels belong to one object
        arr = np.asarray(render_scene(scene))
        for o in scene.objects:
            mask = _mask(arr, COLOURS[o.colour])
            x1, y1, x2, y2 = o.bbox
            inside = mask[y1:y2, x1:x2].sum()
            assert inside >= 0.25 * (x2 - x1) * (y2 - y1), (o, inside)
            assert inside == mask.sum(), f"{o.colour} pixels outside the box of {o}"


def test_every_object_box_lies_in_its_cell_and_is_touched_on_all_four_sides():
    cfg = PRESETS["hard"]
    rng = random.Random(1)
    seen = set()
    for _ in range(60):
        scene = sample_scene(rng, cfg)
        for o in scene.objects:
            seen.add(o.kind)
            cx1, cy1, cx2, cy2 = cell_box(cfg, o.cell)
            x1, y1, x2, y2 = o.bbox
            assert cx1 <= x1 < x2 <= cx2 and cy1 <= y1 < y2 <= cy2
            # Draw the object alone so that objects sharing a colour (hard preset) do not mix.
            alone = Scene(scene.width, scene.height, scene.grid, scene.background, (o,), ())
            ys, xs = np.nonzero(_mask(np.asarray(render_scene(alone)), COLOURS[o.colour]))
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.bbox, o
    assert seen == set(SHAPES)


def test_word_pixels_are_dark_and_inside_the_word_box():
    scenes = [s for s in _scenes("standard", 60, seed=2) if s.words]
    assert scenes
    for scene in scenes:
        dark = _mask(np.asarray(render_scene(scene)), TEXT_COLOUR)
        for w in scene.words:
            x1, y1, x2, y2 = w.bbox
            assert dark[y1:y2, x1:x2].sum() > 20, w
        assert dark.sum() == sum(dark[w.bbox[1] : w.bbox[3], w.bbox[0] : w.bbox[2]].sum() for w in scene.words)


def test_sampled_scenes_respect_their_preset():
    for name, cfg in PRESETS.items():
        for scene in _scenes(name, 50, seed=3):
            assert cfg.min_objects <= len(scene.objects) <= cfg.max_objects
            assert len(scene.words) <= cfg.max_words
            cells = [o.cell for o in scene.objects] + [w.cell for w in scene.words]
            assert len(cells) == len(set(cells)), "one thing per cell"
            assert {o.colour for o in scene.objects} <= set(cfg.colours)
            assert {o.kind for o in scene.objects} <= set(cfg.shapes)
            assert {w.text for w in scene.words} <= set(cfg.words)
            if cfg.unique_colours:
                assert len({o.colour for o in scene.objects}) == len(scene.objects)


def test_cells_are_whole_patches_of_the_default_canvas():
    for cfg in PRESETS.values():
        assert cfg.cell_size % 16 == 0 and cfg.image_size == cfg.grid * cfg.cell_size


def test_scene_round_trips_through_a_dict():
    for scene in _scenes("hard", 10, seed=4):
        assert Scene.from_dict(scene.to_dict()) == scene


def test_bad_world_config_names_the_field():
    with pytest.raises(ValueError, match="colours"):
        WorldConfig(name="bad", colours=("mauve",), shapes=("circle",), sizes=("large",), words=("cat",),
                    min_objects=1, max_objects=1, max_words=0, word_prob=0.0, unique_colours=False, conjunctions=False)


def test_forced_objects_that_share_a_cell_are_rejected():
    with pytest.raises(ValueError, match="share a cell"):
        sample_scene(random.Random(0), PRESETS["standard"], objects=[("circle", "red", "large", 0), ("square", "blue", "large", 0)])

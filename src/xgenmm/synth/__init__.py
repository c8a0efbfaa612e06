"""The synthetic world: seeded scenes of shapes and words whose every fact is known, and
from them data of every kind the recipe consumes, held-out eval sets and a tokenizer corpus
(for the demo and for tests). Light imports only here; `generate_world` is in `.generate`."""

from .render import render_scene
from .world import PRESETS, Scene, SceneObject, SceneWord, WorldConfig, get_preset, sample_scene


def generate_world(*args, **kwargs) -> dict:
    """See `xgenmm.synth.generate.generate_world`."""
    from .generate import generate_world as _generate

    return _generate(*args, **kwargs)


__all__ = ["PRESETS", "Scene", "SceneObject", "SceneWord", "WorldConfig", "generate_world", "get_preset", "render_scene", "sample_scene"]

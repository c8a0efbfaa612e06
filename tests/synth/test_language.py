"""Every question's answer is what the scene's facts say; captions use the released forms."""

from __future__ import annotations

import random
import re

from xgenmm.synth.language import (QUESTION_KINDS, ask, box_text, caption, existence_drill, existence_probe, grounding_caption,
                                   ocr_caption)
from xgenmm.synth.multi import MULTI_KINDS, ask_multi
from xgenmm.synth.world import PRESETS, Scene, sample_scene


def _check(scene: Scene, q: str, a: str) -> None:
    """Recompute the answer of `q` from the scene's facts, template by template."""
    by_expr = {f"the {o.colour} {o.kind}": o for o in scene.objects}
    if m := re.fullmatch(r"What colour is the shape at the (\S+)\?", q):
        assert a == scene.object_at(m[1]).colour
    elif m := re.fullmatch(r"What colour is the (\w+)\?", q):
        assert [o.colour for o in scene.objects if o.kind == m[1]] == [a]
    elif m := re.fullmatch(r"What shape is at the (\S+)\?", q):
        assert a == scene.object_at(m[1]).kind
    elif m := re.fullmatch(r"What shape is the (\w+) object\?", q):
        assert [o.kind for o in scene.objects if o.colour == m[1]] == [a]
    elif m := re.fullmatch(r"Where is (the \w+ \w+)\?", q):
        assert scene.count(*m[1].split()[1:]) == 1 and a == by_expr[m[1]].position
    elif q == "How many shapes are there?":
        assert a == str(len(scene.objects))
    elif m := re.fullmatch(r"How many (\w+) shapes are there\?", q):
        assert a == str(scene.count(colour=m[1]))
    elif m := re.fullmatch(r"Is there an? (\w+) shape in the image\?", q):
        assert a == ("yes" if scene.has(colour=m[1]) else "no")
    elif m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", q):
        assert a == ("yes" if scene.has(m[1], m[2]) else "no")
    elif m := re.fullmatch(r"Is there an? (\w+) in the image\?", q):
        assert a == ("yes" if scene.has(kind=m[1]) else "no")
    elif q == "What word is written in the image?":
        assert [w.text for w in scene.words] == [a]
    elif m := re.fullmatch(r"What word is written at the (\S+)\?", q):
        assert a == scene.word_at(m[1]).text
    elif m := re.fullmatch(r"Give the bounding box of (the \w+ \w+)\.", q):
        assert a == box_text(by_expr[m[1]].bbox, scene.width, scene.height)
    else:
        raise AssertionError(f"unknown question form {q!r}")


def test_every_answer_follows_from_the_scene_facts():
    for name, cfg in PRESETS.items():
        rng = random.Random(5)
        asked = set()
        for _ in range(150):
            scene = sample_scene(rng, cfg, num_words=1)
            for kind in QUESTION_KINDS:
                qa = ask(kind, scene, cfg, rng)
                if qa is not None:
                    _check(scene, qa.question, qa.answer)
                    asked.add(kind)
        assert asked == set(QUESTION_KINDS), name


def test_existence_probes_are_balanced_and_adversarial_negatives_exist():
    cfg, rng = PRESETS["hard"], random.Random(6)
    adversarial = 0
    for _ in range(200):
        scene = sample_scene(rng, cfg, num_objects=4)
        q, a = existence_probe(scene, cfg, rng, want=False)
        assert a == "no"
        _check(scene, q, a)
        if (m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", q)) and scene.has(colour=m[1]) and scene.has(kind=m[2]):
            adversarial += 1
    assert adversarial > 20


def test_existence_drill_asks_distinct_probes_half_of_them_yes():
    for name, cfg in PRESETS.items():
        rng = random.Random(9)
        for _ in range(100):
            scene = sample_scene(rng, cfg)
            drill = existence_drill(scene, cfg, rng, 4)
            assert len(drill) == 4 and len({qa.question for qa in drill}) == 4, (name, drill)
            assert sorted(qa.answer for qa in drill) == ["no", "no", "yes", "yes"], (name, drill)
            for qa in drill:
                assert qa.kind == "existence"
                _check(scene, qa.question, qa.answer)


def test_box_text_is_normalised_with_two_decimals():
    assert box_text((0, 24, 48, 96), 96, 96) == "<bbox>0.00, 0.25, 0.50, 1.00</bbox>"


def test_grounding_captions_use_the_three_released_forms():
    scene = sample_scene(random.Random(7), PRESETS["standard"], num_objects=2)
    o = scene.objects[0]
    assert box_text(o.bbox, 96, 96) in grounding_caption(scene, "bbox")
    assert re.search(r"starts at \(\d\.\d\d, \d\.\d\d\) and extends up to \(\d\.\d\d, \d\.\d\d\)", grounding_caption(scene, "starts"))
    assert re.search(r"(corner|side|top|bottom|center) of the image", grounding_caption(scene, "phrase"))


def test_ocr_captions_name_each_word_with_its_box():
    scene = sample_scene(random.Random(8), PRESETS["hard"], num_words=2)
    tagged = ocr_caption(scene, "tagged")
    quoted = ocr_caption(scene, "quoted")
    for w in scene.words:
        assert f"<ocr>{w.text}</ocr>{box_text(w.bbox, 96, 96)}" in tagged
        assert f'"{w.text}" ({box_text(w.bbox, 96, 96)})' in quoted
    assert caption(scene, "plain").count('the word "') == 2


def test_multi_image_answers_follow_from_the_scenes():
    cfg, rng = PRESETS["standard"], random.Random(9)
    for i in range(80):
        m = ask_multi(MULTI_KINDS[i % len(MULTI_KINDS)], cfg, rng)
        counts = [len(s.objects) for s in m.scenes]
        if m.kind == "more":
            assert m.answer == ("first" if counts[0] > counts[1] else "second") and counts[0] != counts[1]
        elif m.kind == "total_count":
            assert m.answer == str(sum(counts))
        elif m.kind == "same_colour":
            pos = re.fullmatch(r"Is the shape at the (\S+) the same colour in both images\?", m.question)[1]
            a, b = (s.object_at(pos) for s in m.scenes)
            assert m.answer == ("yes" if a.colour == b.colour else "no")
        else:
            colour, kind = re.fullmatch(r"In which image is there an? (\w+) (\w+)\?", m.question).groups()
            holders = [i for i, s in enumerate(m.scenes) if s.has(colour, kind)]
            assert len(holders) == 1 and m.answer == ("first", "second", "third")[holders[0]]
        assert m.options is None or m.answer in m.options

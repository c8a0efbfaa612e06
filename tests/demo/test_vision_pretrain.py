"""The SigLIP vision-tower stage: caption clauses, hard negatives, the sigmoid loss, training
and the hand-over of the tower to XGenMM."""

from __future__ import annotations

import random

import pytest
import torch

from xgenmm.demo.presets import model_overrides
from xgenmm.demo.vision_pretrain import (
    VisionPretrainConfig, build_siglip, cell_facts, copy_vision_tower, fact_text, hard_negative, pretrain_vision,
    scene_facts, sigmoid_loss,
)
from xgenmm.model.image_processing import to_tensor
from xgenmm.synth.language import plain_caption
from xgenmm.synth.render import render_scene
from xgenmm.synth.world import PRESETS, sample_scene

WORLD = PRESETS["easy"]
WORLD_INFO = {"colours": list(WORLD.colours), "shapes": list(WORLD.shapes), "sizes": list(WORLD.sizes),
              "words": list(WORLD.words), "cell_names": list(WORLD.cell_names)}
SMALL_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=96,
                    patch_size=16)


def scenes(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [sample_scene(rng, WORLD) for _ in range(n)]


def items(n: int, seed: int = 0):
    return [(to_tensor(render_scene(s)), scene_facts(s.to_dict())) for s in scenes(n, seed)]


@pytest.fixture(scope="module")
def world_tokenizer():
    from xgenmm.model.tokenizer import train_tokenizer

    texts = [fact_text(f) for s in scenes(200) for f in scene_facts(s.to_dict())]
    rng = random.Random(1)
    texts += [fact_text(hard_negative(f, WORLD_INFO, rng)) for s in scenes(200, 2) for f in scene_facts(s.to_dict())]
    return train_tokenizer(texts * 3, vocab_size=400)


def test_every_clause_is_worded_as_in_the_worlds_plain_caption():
    for scene in scenes(30):
        caption = plain_caption(scene, 0)
        for f in scene_facts(scene.to_dict()):
            assert fact_text(f) in caption


def test_hard_negative_changes_one_attribute_and_is_false_of_the_scene():
    rng = random.Random(0)
    for scene in scenes(30):
        facts = scene_facts(scene.to_dict())
        for f in facts:
            neg = hard_negative(f, WORLD_INFO, rng)
            assert neg[0] == f[0] and len(neg) == len(f)
            assert sum(a != b for a, b in zip(f, neg)) == 1
            if neg[0] == "word" or neg[-1] != f[-1]:
                continue  # a moved clause can be true elsewhere; truth is decided per batch
            assert neg not in facts


def test_sigmoid_loss_with_identity_labels_is_siglips_own_loss(world_tokenizer):
    torch.manual_seed(0)
    cfg = VisionPretrainConfig(text_hidden=32)
    model = build_siglip(SMALL_VISION, world_tokenizer, cfg)
    batch = items(4)
    from xgenmm.demo.vision_pretrain import encode_texts

    ids = encode_texts(world_tokenizer, [fact_text(sorted(fs)[0]) for _, fs in batch], cfg.max_text_tokens)
    out = model(input_ids=ids, pixel_values=torch.stack([p for p, _ in batch]), return_loss=True)
    assert torch.allclose(sigmoid_loss(out.logits_per_image, torch.eye(4)), out.loss, atol=1e-5)


def test_loss_decreases_in_a_few_steps(world_tokenizer):
    cfg = VisionPretrainConfig(max_steps=20, batch_images=12, negatives_per_image=2, lr=3e-3,
                               text_hidden=32, seed=0)
    model = build_siglip(SMALL_VISION, world_tokenizer, cfg)
    res = pretrain_vision(model, items(64), items(16, seed=5), WORLD_INFO, world_tokenizer, cfg, progress=False)
    assert res.steps == 20
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < 0.8 * first
    assert 0.0 <= res.pair_accuracy <= 1.0 and 0.0 <= res.hard_negative_accuracy <= 1.0


def test_trained_tower_is_copied_into_xgenmm_and_frozen(world_tokenizer):
    from xgenmm.demo.assemble import initial_model

    overrides = model_overrides(width=32)
    overrides["vision"]["hf_config"].update(intermediate_size=64, num_hidden_layers=1)
    overrides["resampler"]["dim"] = 32
    model = initial_model(world_tokenizer, overrides, seed=0)
    siglip = build_siglip(overrides["vision"]["hf_config"], world_tokenizer, VisionPretrainConfig(text_hidden=32, seed=3))
    copy_vision_tower(siglip, model)
    ours, theirs = model.vision_encoder.tower.state_dict(), siglip.vision_model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    assert model.vision_encoder.cfg.frozen


def test_cell_facts_are_each_cells_content_without_position():
    rng = random.Random(3)
    for scene in scenes(20):
        cells = cell_facts(scene.to_dict(), WORLD.num_cells)
        for o in scene.objects:
            assert cells[o.cell] == {("obj", o.kind, o.colour, o.size, None)}
            assert fact_text(("obj", o.kind, o.colour, o.size, None)) == f"a {o.size} {o.colour} {o.kind}"
        for w in scene.words:
            assert cells[w.cell] == {("word", w.text, None)}
        for f in set().union(*cells):
            assert hard_negative(f, WORLD_INFO, rng)[-1] is None  # a tile's negative changes what, never where
        assert sum(map(bool, cells)) == len(scene.objects) + len(scene.words)


def test_anyres_caption_items_are_the_cells_tiles(small_world, small_manifest):
    """With the demo's layout (one grid, the canvas, cut into the scene's cells), each item is
    one cell's tile, pixel for pixel, with that cell's facts; one empty tile per image."""
    import io
    import json

    import webdataset as wds
    from PIL import Image

    from xgenmm.demo.assemble import caption_images
    from xgenmm.model.image_processing import XGenMMImageProcessor

    info = small_manifest["world"]
    canvas, grid = info["image_size"], info["grid"]
    tile = canvas // grid
    proc = XGenMMImageProcessor(tile, "anyres", [[canvas, canvas]])
    got = caption_images(small_world, proc, limit=1)
    first = next(iter(wds.WebDataset([str(small_world / small_manifest["paths"]["captions"][0])], shardshuffle=False)))
    scene = json.loads(first["json"])["scene"]
    image = Image.open(io.BytesIO(first["png"])).convert("RGB")
    cells = cell_facts(scene, grid * grid)
    expect = [c for c in range(grid * grid) if cells[c]]
    assert [fs for _, fs in got[: len(expect)]] == [cells[c] for c in expect]
    assert len(got) == len(expect) + 1 and got[-1][1] == set()  # and one empty tile
    for (crop, _), c in zip(got, expect):
        r, k = divmod(c, grid)
        want = to_tensor(image.crop((k * tile, r * tile, (k + 1) * tile, (r + 1) * tile)))
        assert torch.allclose(crop, want, atol=1e-6)


def test_whiten_projection_centres_and_whitens_the_resampler_tokens(world_tokenizer):
    from xgenmm.demo.assemble import initial_model, whiten_projection

    overrides = model_overrides(width=32, tile_positions=False)  # the tokens alone (positions: the next test)
    overrides["vision"]["hf_config"].update(intermediate_size=64, num_hidden_layers=1)
    overrides["resampler"]["dim"] = 32
    model = initial_model(world_tokenizer, overrides, seed=0)
    g = torch.Generator().manual_seed(0)
    # Images whose crops vary mostly along one pixel direction: colour-dominated, as the world's.
    pixels = [(torch.rand(10, 1, 1, 1, generator=g) * torch.ones(10, 3, 32, 32) +
               0.05 * torch.randn(10, 3, 32, 32, generator=g)).clamp(-1, 1) for _ in range(120)]
    sizes = [(96, 96)] * len(pixels)
    with torch.no_grad():
        before = model.encode_images(pixels, sizes)[0]
    stats = whiten_projection(model, pixels, sizes, eps=1e-6)
    with torch.no_grad():
        after = model.encode_images(pixels, sizes)[0]
    assert after.shape == before.shape == (120 * 10, model.config.resampler.out_dim)
    assert after.mean(0).abs().max() < 1e-3
    spectrum = torch.linalg.eigvalsh(torch.cov(after.double().T)).flip(0)
    assert spectrum[:8] == pytest.approx(torch.ones(8, dtype=torch.float64), abs=0.02)  # unit variance per direction
    assert spectrum.max() < 1.02 and 0.0 < stats["top4_variance_share"] <= 1.0
    before_spectrum = torch.linalg.eigvalsh(torch.cov(before.double().T)).flip(0)
    assert before_spectrum[0] > 50 * before_spectrum[8]  # it was far from white
    with pytest.raises(ValueError, match="give more images"):
        whiten_projection(model, pixels[:2], sizes[:2])


def test_whiten_projection_puts_group_positions_beside_the_whitened_tokens(world_tokenizer):
    from xgenmm.demo.assemble import initial_model, whiten_projection

    overrides = model_overrides(width=32)
    overrides["vision"]["hf_config"].update(intermediate_size=64, num_hidden_layers=1)
    overrides["resampler"].update(dim=32, group_positions=10)
    model = initial_model(world_tokenizer, overrides, seed=0)
    g = torch.Generator().manual_seed(0)
    pixels = [torch.rand(10, 3, 32, 32, generator=g) * 2 - 1 for _ in range(40)]
    whiten_projection(model, pixels, [(96, 96)] * len(pixels), eps=1e-6)
    pos = model.vision_tokenizer.group_pos.detach().double()
    weight = model.vision_tokenizer.projection.weight.detach().double()  # [out, in]: the tokens' directions
    lengths = pos.norm(dim=1)
    assert torch.allclose(lengths, lengths[0].expand(10)) and 4.0 < float(lengths[0]) < 8.0  # ~ a whitened token
    gram = pos @ pos.T / lengths[0] ** 2
    assert torch.allclose(gram, torch.eye(10, dtype=torch.float64), atol=1e-6)  # orthogonal to each other
    assert float((pos @ weight).abs().max()) < 1e-4 * float(lengths[0] * weight.norm(dim=0).max())  # and to the tokens
    overrides["resampler"]["group_positions"] = 100  # 32 whitened directions + 100 > the LM's 128
    model = initial_model(world_tokenizer, overrides, seed=0)
    with pytest.raises(ValueError, match="do not fit"):
        whiten_projection(model, pixels, [(96, 96)] * len(pixels))


def test_place_image_positions_sets_them_beside_the_tokens_and_the_tile_slots(world_tokenizer):
    from xgenmm.demo.assemble import initial_model, place_image_positions, whiten_projection

    overrides = model_overrides(width=32, image_positions=3)
    overrides["vision"]["hf_config"].update(intermediate_size=64, num_hidden_layers=1)
    overrides["resampler"]["dim"] = 32
    model = initial_model(world_tokenizer, overrides, seed=0)
    g = torch.Generator().manual_seed(0)
    pixels = [torch.rand(10, 3, 32, 32, generator=g) * 2 - 1 for _ in range(40)]
    sizes = [(96, 96)] * len(pixels)
    whiten_projection(model, pixels, sizes, eps=1e-6)
    assert float(model.vision_tokenizer.image_pos.detach().abs().max()) == 0.0  # a no-op until placed
    length = place_image_positions(model, pixels, sizes)
    rows = model.vision_tokenizer.image_pos.detach().double()
    with torch.no_grad():
        tokens = model.encode_images(pixels, sizes)[0]
    assert rows.shape == (3, model.config.resampler.out_dim)
    assert length == pytest.approx(float(tokens.norm(dim=1).mean()), rel=1e-4)
    assert torch.allclose(rows.norm(dim=1), torch.full((3,), length, dtype=torch.float64), rtol=1e-5)
    slots = model.vision_tokenizer.group_pos.detach().double()
    weight = model.vision_tokenizer.projection.weight.detach().double()
    assert torch.allclose(rows @ rows.T / length**2, torch.eye(3, dtype=torch.float64), atol=1e-6)
    assert float((rows @ slots.T).abs().max()) < 1e-6 * length * float(slots.norm(dim=1).max())  # beside the slots
    assert float((rows @ weight).abs().max()) < 1e-6 * length * float(weight.norm(dim=0).max())  # and the tokens
    overrides["resampler"]["image_positions"] = 100  # 32 token directions + 10 slots + 100 > the LM's 128
    model = initial_model(world_tokenizer, overrides, seed=0)
    with pytest.raises(ValueError, match="100 image positions do not fit beside the 42 directions"):
        place_image_positions(model, pixels, sizes)
    model = initial_model(world_tokenizer, model_overrides(width=32, image_positions=0), seed=0)
    with pytest.raises(ValueError, match="has no image position embeddings"):
        place_image_positions(model, pixels, sizes)

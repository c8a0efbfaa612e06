"""The processor: template, conventions, padding, and clear errors on bad images and tags."""

import io

import pytest
from PIL import Image

from tests.conftest import make_image
from xgenmm.model.image_processing import ImageLoadError, XGenMMImageProcessor, load_image
from xgenmm.model.template import DEFAULT_SYSTEM_PROMPT, render_chat


def test_chat_template_is_the_released_string(tiny_processor):
    text = tiny_processor.apply_chat_template([{"role": "user", "content": "<image>\nhi"}])
    assert text == (f"<|system|>\n{DEFAULT_SYSTEM_PROMPT}<|end|>\n<|user|>\n<image>\nhi<|end|>\n<|assistant|>\n")


def test_jinja_template_renders_the_same_text(tiny_processor):
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    ours = render_chat(msgs, add_generation_prompt=False)[0]
    assert tiny_processor.tokenizer.apply_chat_template(msgs, tokenize=False) == ours


def test_supervised_spans_are_answers_with_their_end_tag():
    text, spans = render_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "ans"}])
    assert [text[s.start:s.end] for s in spans if s.supervised] == ["ans<|end|>\n"]


def test_instruct_batch_has_one_tag_per_image_and_left_padding(tiny_processor):
    batch = tiny_processor(["<image>\nshort", "longer text with <image> and <image>"],
                           [[make_image(90, 60)], [make_image(128, 128), make_image(200, 60)]])
    assert (batch["input_ids"] == tiny_processor.image_token_id).sum() == 3
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    assert [p.shape[0] for p in batch["pixel_values"]] == [3, 5, 4]  # grids 2x1, 2x2, 3x1 (+ base crop)
    assert batch["image_sizes"] == [(90, 60), (128, 128), (200, 60)]


def test_base_convention_writes_placeholders(tiny_processor):
    proc = type(tiny_processor)(XGenMMImageProcessor(64, "squash"), tiny_processor.tokenizer, 16)
    batch = proc("<image>a red circle<|endofchunk|>", [make_image(50, 50)], convention="base")
    ids = batch["input_ids"][0]
    assert (ids == proc.image_token_id).sum() == 1 and (ids == proc.placeholder_token_id).sum() == 15


def test_tokens_per_image_counts_crops(tiny_processor):
    assert tiny_processor.tokens_per_image((128, 128)) == 5 * 16  # 2x2 grid + base crop
    assert tiny_processor.tokens_per_image((200, 60)) == 4 * 16  # 3x1


def test_tag_count_mismatch_names_the_sample(tiny_processor):
    with pytest.raises(ValueError, match="sample 1: 2 <image> tags but 1 images"):
        tiny_processor(["<image>a", "<image><image>b"], [[make_image(8, 8)], [make_image(8, 8)]])
    with pytest.raises(ValueError, match=r"1 <image> tags \(per sample: \[1\]\) but 2 images"):
        tiny_processor("<image>a", [make_image(8, 8), make_image(8, 8)])


def test_corrupt_empty_and_zero_sized_images_are_named(tmp_path):
    png = io.BytesIO()
    make_image(20, 20).save(png, "PNG")
    with pytest.raises(ImageLoadError, match="cat.png: cannot decode"):
        load_image(png.getvalue()[:40], name="cat.png")
    with pytest.raises(ImageLoadError, match="empty image data"):
        load_image(b"", name="x")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png: empty image file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="zero-sized"):
        load_image(Image.new("RGB", (0, 5)), name="z")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_non_rgb_images_are_converted():
    assert load_image(Image.new("L", (4, 4), 100)).mode == "RGB"
    rgba = load_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0)))
    assert rgba.mode == "RGB" and rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert load_image(Image.new("P", (4, 4))).mode == "RGB"


def test_pad_mode_gives_one_square_crop():
    crops = XGenMMImageProcessor(32, "pad").preprocess_one(make_image(64, 16))
    assert crops.shape == (1, 3, 32, 32)
    assert crops[0, :, 0, 0].tolist() == pytest.approx([127 / 255 * 2 - 1] * 3, abs=1e-6)


def test_crops_convert_together_exactly_as_one_by_one():
    import numpy as np
    import torch

    from xgenmm.model.image_processing import to_tensor, to_tensors

    g = np.random.default_rng(0)
    crops = [Image.fromarray(g.integers(0, 256, (32, 48, 3), dtype=np.uint8)) for _ in range(5)]
    together = to_tensors(crops)
    one_by_one = torch.stack([torch.from_numpy(np.array(c, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
                              .sub(0.5).div(0.5) for c in crops])
    assert together.is_contiguous() and together.shape == (5, 3, 32, 48)
    assert torch.equal(together, one_by_one)
    assert torch.equal(to_tensor(crops[0]), one_by_one[0])


def test_every_sample_gets_its_own_images_crops(tiny_processor, tmp_path):
    """Images loaded from paths (or converted from grayscale) are new objects freed once their
    sample is done; keyed by such an object's id, a later image could be handed its crops."""
    import torch

    paths, grays = [], []
    for k in range(40):
        make_image(40 + k % 7, 30 + k % 5, seed=k).save(tmp_path / f"{k}.png")
        paths.append(str(tmp_path / f"{k}.png"))
        grays.append(make_image(36, 36, seed=100 + k).convert("L"))
    ip = tiny_processor.image_processor
    for images, per_row in ((paths, 1), (paths, 2), (grays, 1)):
        texts = ["<image>" * per_row + "what is it?"] * (len(images) // per_row)
        out = tiny_processor(texts, images)
        for k, im in enumerate(images):
            want = ip.preprocess_one(load_image(im))
            assert torch.equal(out["pixel_values"][k], want), k
    shared = make_image(40, 40)  # the same object in two rows is processed once
    out = tiny_processor(["<image>a", "<image>b"], [shared, shared])
    assert out["pixel_values"][0] is out["pixel_values"][1]

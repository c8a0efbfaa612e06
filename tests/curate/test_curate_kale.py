"""KALE stage 1 with tiny randomly initialised models: a ViT+GPT-2 captioner and a Llama LLM."""

import pyarrow.parquet as pq
import pytest
from curate_fixtures import write_folder

from xgenmm.curate import KaleTaskConfig, RunConfig, run
from xgenmm.curate.kale import KALE_PROMPT, HFImageToTextCaptioner, LLMFuser, build_captioner, fusion_prompt


def test_fusion_prompt_holds_the_dense_caption_and_the_alt_text():
    text = fusion_prompt("A tall tower of iron lattice.", "Eiffel Tower, Paris 2019")
    assert "A tall tower of iron lattice." in text and "Eiffel Tower, Paris 2019" in text
    assert KALE_PROMPT.count("{dense}") == 1 and KALE_PROMPT.count("{alt}") == 1


def test_llm_fuser_renders_the_prompt_in_the_chat_template(tiny_kale_dirs):
    fuser = LLMFuser(tiny_kale_dirs[1], max_new_tokens=4)
    rendered = fuser.render("dense words", "alt words")
    assert rendered.startswith("<|user|>\n") and rendered.endswith("<|assistant|>\n")
    assert "dense words" in rendered and "alt words" in rendered


def test_llm_fuser_is_deterministic_and_batch_independent(tiny_kale_dirs):
    fuser = LLMFuser(tiny_kale_dirs[1], max_new_tokens=4)
    both = fuser.fuse(["a red square", "a much longer dense caption of a blue circle"], ["shop sign", "logo"])
    alone = fuser.fuse(["a red square"], ["shop sign"])
    assert len(both) == 2 and both[0] == alone[0]


def test_image_to_text_captioner_is_picked_for_a_transformers_checkpoint(tiny_kale_dirs, scenes):
    from PIL import Image

    cap = build_captioner(tiny_kale_dirs[0], max_new_tokens=4)
    assert isinstance(cap, HFImageToTextCaptioner)
    out = cap.caption([Image.new("RGB", (64, 48), "red"), Image.new("RGB", (40, 80), "blue")])
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)


def test_kale_pipeline_writes_fused_captions_and_keeps_the_dense_one(tmp_path, tiny_kale_dirs, scenes):
    captioner, llm = tiny_kale_dirs
    key, data, _, meta = scenes[2]
    src = write_folder(tmp_path / "in", scenes[:2] + [(key, data, None, meta)])
    cfg = KaleTaskConfig(captioner=captioner, llm=llm, caption_tokens=4, fusion_tokens=4, batch_size=2)
    summary = run(cfg, str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["samples"]["written"] == 3
    assert summary["kept_by_policy"].get("missing_alt_text") == 1
    rows = pq.read_table(tmp_path / "out" / "parquet" / "in-00000.parquet").to_pylist()
    assert [r["alt_text"] for r in rows] == [scenes[0][2], scenes[1][2], ""]
    assert all(r["dense_caption"] for r in rows)
    assert rows[2]["caption"] == rows[2]["dense_caption"]  # no alt-text: the dense caption as is


def test_kale_skip_policy_drops_images_without_alt_text(tmp_path, tiny_kale_dirs, scenes):
    key, data, _, meta = scenes[0]
    src = write_folder(tmp_path / "in", [(key, data, None, meta)])
    cfg = KaleTaskConfig(captioner=tiny_kale_dirs[0], llm=tiny_kale_dirs[1], caption_tokens=4, fusion_tokens=4,
                         on_missing_alt="skip")
    summary = run(cfg, str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["skipped"] == {"missing_alt_text": 1} and summary["samples"]["written"] == 0


def test_kale_needs_both_checkpoints(tmp_path, scenes):
    src = write_folder(tmp_path / "in", scenes[:1])
    with pytest.raises(ValueError, match="--captioner and --llm"):
        from xgenmm.curate.runner import process_shard
        from xgenmm.curate.sources import list_shards

        process_shard(KaleTaskConfig(), list_shards(str(src))[0], str(tmp_path / "out"))


def test_an_xgenmm_checkpoint_is_captioned_through_the_model_api(tmp_path):
    import torch
    from PIL import Image

    from xgenmm.curate.kale import XGenMMCaptioner
    from xgenmm.curate.tiny_models import tiny_tokenizer
    from xgenmm.model import XGenMM
    from xgenmm.model.image_processing import XGenMMImageProcessor
    from xgenmm.model.presets import preset_config
    from xgenmm.model.processor import XGenMMProcessor

    tok = tiny_tokenizer()
    config = preset_config("tiny", tokenizer=tok)
    torch.manual_seed(0)
    model = XGenMM(config).eval()
    image_processor = XGenMMImageProcessor(image_size=config.image.image_size, mode=config.image.mode, grids=config.image.grids)
    model.save_pretrained(tmp_path / "xgenmm", processor=XGenMMProcessor(image_processor, tok, model.tokens_per_crop))
    cap = build_captioner(str(tmp_path / "xgenmm"), max_new_tokens=3)
    assert isinstance(cap, XGenMMCaptioner)
    out = cap.caption([Image.new("RGB", (64, 48), "red"), Image.new("RGB", (40, 80), "blue")])
    assert len(out) == 2 and all(isinstance(t, str) for t in out)

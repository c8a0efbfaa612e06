"""Import and export of the released layout: exact keys, bit-exact round trips, counts."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import RELEASE_FIXTURES as F
from xgenmm.model import XGenMM
from xgenmm.model.convert import export_release, import_release


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    import_release(F / "checkpoint", root / "imported")
    export_release(root / "imported", root / "exported")
    import_release(root / "exported", root / "reimported", vision_config=str(F / "checkpoint" / "siglip-tiny"))
    return root


def test_export_has_exactly_the_released_keys_shapes_and_dtypes(dirs):
    expected = json.loads((F / "checkpoint_keys.json").read_text())
    got = load_file(dirs / "exported" / "model.safetensors")
    assert {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in got.items()} == expected


def test_export_reproduces_every_used_released_tensor(dirs):
    release = load_file(F / "checkpoint" / "model.safetensors")
    got = load_file(dirs / "exported" / "model.safetensors")
    for k, v in release.items():
        if k in ("vlm.lang_model.model.embed_tokens.weight", "vlm.lang_model.lm_head.weight", "vlm.lang_model.lm_head.bias"):
            assert torch.equal(got[k][:100], v[:100]), k  # rows 100-127 are never used: written as zeros
            assert (got[k][100:] == 0).all()
        else:
            assert torch.equal(got[k], v), k


def test_import_export_import_is_bit_exact(dirs):
    a = load_file(dirs / "imported" / "model.safetensors")
    b = load_file(dirs / "reimported" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exported_config_is_the_released_form(dirs):
    cfg = json.loads((dirs / "exported" / "config.json").read_text())
    assert cfg["model_type"] == "xgenmm"
    assert cfg["text_config"]["initial_tokenizer_len"] == 100 and cfg["text_config"]["vocab_size"] == 128
    assert cfg["vision_tokenizer_config"] == {**cfg["vision_tokenizer_config"], "vis_feature_dim": 8,
                                              "lang_embedding_dim": 64, "num_vis_tokens": 12}
    pre = json.loads((dirs / "exported" / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "Blip3ImageProcessor" and pre["size"] == [42, 42]


def test_corrupted_release_keys_are_named(tmp_path):
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(F / "checkpoint", tmp_path / "rel")
    state = load_file(tmp_path / "rel" / "model.safetensors")
    del state["vlm.vision_tokenizer.latents"]
    state["vlm.lang_model.model.layers.0.mlp.down_proj.weight"] = torch.zeros(2, 2)
    save_file(state, tmp_path / "rel" / "model.safetensors")
    with pytest.raises(ValueError) as e:
        import_release(tmp_path / "rel", tmp_path / "out")
    assert "vision_tokenizer.latents" in str(e.value) and "down_proj" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_released_size_has_the_released_parameter_counts():
    from xgenmm.model.convert import our_state_to_release
    from xgenmm.model.presets import preset_config

    with torch.device("meta"):
        model = XGenMM(preset_config("phi3-mini"))
    counts = model.parameter_counts()
    assert counts["vision_encoder"] == 428_225_600
    assert counts["vision_tokenizer"] == 109_901_568
    tok = model.config.tokens
    release = our_state_to_release(model.state_dict(), tok.initial_tokenizer_len, tok.release_vocab_rows)
    lm = sum(v.numel() for k, v in release.items() if k.startswith("vlm.lang_model."))
    assert lm == 3_821_130_051
    assert sum(v.numel() for v in release.values()) == 4_359_257_219


@pytest.mark.parametrize("key, value, message", [("media_positions", 16, "media position embeddings"),
                                                 ("group_positions", 10, "group position embeddings"),
                                                 ("image_positions", 2, "image position embeddings")])
def test_export_refuses_position_embeddings_the_release_lacks(dirs, tmp_path, key, value, message):
    """The released resampler has none: an export would load only by dropping them."""
    model_dir = _with_config(dirs / "imported", tmp_path, lambda c: c["resampler"].update({key: value}))
    with pytest.raises(ValueError, match=message):
        export_release(model_dir, tmp_path / "out")


def _with_config(src, tmp_path, change):
    cfg = json.loads((src / "config.json").read_text())
    change(cfg)
    model_dir = tmp_path / "changed"
    model_dir.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (model_dir / f.name).write_bytes(f.read_bytes())
    (model_dir / "config.json").write_text(json.dumps(cfg))
    return model_dir


@pytest.mark.parametrize("section, key, value, message", [
    ("image", "token_grouping", "tiles", "orders an image's tokens by tile"),
    ("image", "mode", "pad", "image.mode 'pad'"),
])
def test_export_refuses_image_handling_the_release_cannot_express(dirs, tmp_path, section, key, value, message):
    """Re-imported, such a model would group its tokens or preprocess its images otherwise."""
    model_dir = _with_config(dirs / "imported", tmp_path, lambda c: c[section].update({key: value}))
    with pytest.raises(ValueError, match=message):
        export_release(model_dir, tmp_path / "out")


def test_several_end_tokens_survive_export_and_import(dirs, tmp_path):
    model_dir = _with_config(dirs / "imported", tmp_path, lambda c: c["tokens"].update(
        eos_token_ids=[c["tokens"]["eos_token_ids"][0], 5]))
    export_release(model_dir, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["eos_token_id"][1] == 5
    import_release(tmp_path / "out", tmp_path / "back", vision_config=str(F / "checkpoint" / "siglip-tiny"))
    back = json.loads((tmp_path / "back" / "config.json").read_text())["tokens"]["eos_token_ids"]
    assert back == json.loads((model_dir / "config.json").read_text())["tokens"]["eos_token_ids"]

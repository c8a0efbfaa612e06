"""The loader: deterministic for a seed with several workers, and resumable: a run restored
from `state_dict()` sees exactly the batches the uninterrupted run would have seen."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from datahelpers import llava, write_jsonl

from xgenmm.data import BatchConfig, EncodeConfig, LoaderConfig, build_loader

QUESTIONS = ["what colour is the circle?", "how many shapes are there?", "describe the image", "read the word"]
ANSWERS = ["red", "two", "a yellow star and a purple cross " * 3, "the word is cat"]


def dataset(image_dir, n=36):
    recs = []
    for i in range(n):
        image = f"img{i % 5}.png" if i % 3 else None
        recs.append(llava(i, image=image, question=QUESTIONS[i % 4], answer=ANSWERS[i % 4]))
    recs[7] = "{broken"
    return str(write_jsonl(image_dir / "sft.jsonl", recs))


def make(path, processor, workers=0, **batch):
    return build_loader(path, processor, EncodeConfig(max_length=400), BatchConfig(**{"batch_size": 3, **batch}),
                        loader=LoaderConfig(seed=5, num_workers=workers))


def ids(batches):
    return [b["sample_ids"] for b in batches]


def test_two_workers_are_deterministic_and_cover_every_good_sample(image_dir, processor):
    path = dataset(image_dir)
    a, b = ids(make(path, processor, 2)), ids(make(path, processor, 2))
    assert a == b
    flat = sorted(s for batch in a for s in batch)
    assert flat == sorted(f"s{i}" for i in range(36) if i != 7)


def test_loader_reports_skips_per_reason_at_the_end_of_the_epoch(image_dir, processor):
    loader = make(dataset(image_dir), processor, 2)
    list(loader)
    st = loader.last_epoch_stats
    assert (st.read, st.ok, dict(st.skipped)) == (36, 35, {"bad_json": 1})


@pytest.mark.parametrize("workers,batch", [
    (0, {}),
    (2, {}),
    (2, {"packing": True, "pack_window": 6, "max_images_per_row": 3}),
    (0, {"group_by_modality": True, "group_by_length": True, "length_buckets": [100, 200]}),
])
def test_resumed_loader_sees_exactly_the_remaining_batches(image_dir, processor, workers, batch):
    path = dataset(image_dir)
    full = ids(make(path, processor, workers, **batch))
    for k in (5, len(full) - 2):  # mid-stream, and among the final batches flushed at the end
        first = make(path, processor, workers, **batch)
        it = iter(first)
        seen = [next(it)["sample_ids"] for _ in range(k)]
        state = first.state_dict()
        del it
        resumed = make(path, processor, workers, **batch)
        resumed.load_state_dict(state)
        assert seen + ids(resumed) == full, k


def test_resuming_with_another_worker_count_is_refused(image_dir, processor):
    path = dataset(image_dir, n=12)
    state = make(path, processor, 2).state_dict()
    with pytest.raises(ValueError, match="same"):
        make(path, processor, 0).load_state_dict(state)


def test_second_epoch_reshuffles(image_dir, processor):
    loader = make(dataset(image_dir), processor, 0)
    assert ids(loader) != ids(loader)


def test_an_in_process_loader_leaves_the_training_threads_alone(image_dir, processor):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batches = list(make(dataset(image_dir, n=9), processor, workers=0))
        assert batches and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ---- the encoded-sample cache (data.cache_mb) ------------------------------------------------


def repair_dataset(image_dir, n=24):
    """Samples that need repairs or get skipped at max_length 200: every fourth has its image tag
    missing (fixed_single_image_tags); the long answers are cut (truncated); five-crop images
    leave no room for the answer (no_supervised_tokens); record 7 is broken (bad_json)."""
    recs = []
    for i in range(n):
        rec = llava(i, image=f"img{i % 5}.png", question=QUESTIONS[i % 4], answer=ANSWERS[i % 4])
        if i % 4 == 1:
            rec["conversations"][0]["value"] = QUESTIONS[i % 4]  # no <image> tag
        recs.append(rec)
    recs[7] = "{broken"
    return str(write_jsonl(image_dir / "repairs.jsonl", recs))


def make_cached(path, processor, cache_mb=0, **batch):
    return build_loader(path, processor, EncodeConfig(max_length=200), BatchConfig(**{"batch_size": 3, **batch}),
                        loader=LoaderConfig(seed=5, cache_mb=cache_mb))


def same_batches(a: list[dict], b: list[dict]) -> bool:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["sample_ids"] == y["sample_ids"]
        for k in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(x[k], y[k]), k
        assert x["image_sizes"] == y["image_sizes"]
        assert len(x["pixel_values"]) == len(y["pixel_values"])
        assert all(torch.equal(p, q) for p, q in zip(x["pixel_values"], y["pixel_values"]))
    return True


@pytest.mark.parametrize("batch", [{}, {"packing": True, "pack_window": 6}])
def test_a_cached_loader_gives_every_epoch_exactly_the_uncached_batches_and_counters(image_dir, processor, batch):
    path = repair_dataset(image_dir)
    plain, cached = make_cached(path, processor, **batch), make_cached(path, processor, cache_mb=64, **batch)
    for epoch in range(3):
        assert same_batches(list(plain), list(cached)), epoch
        a, b = plain.last_epoch_stats.to_dict(), cached.last_epoch_stats.to_dict()
        assert a == b, epoch
        assert a["skipped"] == {"bad_json": 1, "no_supervised_tokens": 5}
        assert a["repaired"] == {"fixed_single_image_tags": 6, "truncated": 5}
    cache = cached.pipeline.cache
    assert (cache.misses, cache.hits, len(cache.items)) == (24, 48, 24)  # skipped records are remembered too


def test_a_cached_epoch_does_not_decode_or_encode_again(image_dir, processor, monkeypatch):
    from xgenmm.data import encode as encode_mod

    calls = []
    original = encode_mod.Encoder.encode
    monkeypatch.setattr(encode_mod.Encoder, "encode", lambda self, s: calls.append(s.id) or original(self, s))
    loader = make_cached(repair_dataset(image_dir), processor, cache_mb=64)
    list(loader)
    first = len(calls)
    list(loader)
    assert first == 23 and len(calls) == first  # 24 records, one of them not JSON


def test_the_samples_of_one_image_file_share_one_crops_tensor(image_dir, processor):
    """24 records show 5 image files: with the cache on, each file is decoded and cut once, its
    crops tensor is the one every sample showing it carries (so the model's image-token cache
    runs the vision side once per file), its bytes are counted once, and the values are the
    image processor's."""
    loader = make_cached(repair_dataset(image_dir), processor, cache_mb=64)
    first, second = list(loader), list(loader)
    shown = [t for b in first for t in b["pixel_values"]]
    cache = loader.pipeline.cache
    kept = {id(pixels): pixels for pixels, _ in cache.pixels.values()}
    # every sample's crops are its file's one tensor (one of the five files is only in samples
    # that are skipped or lose their image to truncation)
    assert {id(t) for t in shown} == set(kept) and len(kept) == 4 and len(shown) > 10
    assert sorted(id(t) for b in second for t in b["pixel_values"]) == sorted(id(t) for t in shown)  # reshuffled
    for path, (pixels, size) in cache.pixels.items():
        assert torch.equal(pixels, processor.image_processor.preprocess_one(path)) and size == Image.open(path).size
    pixel_bytes = sum(t.numel() * t.element_size() for t in kept.values())
    assert cache.bytes == pixel_bytes + sum(cache.size(e) for e in cache.items.values())


def test_a_full_cache_keeps_what_fits_and_encodes_the_rest(image_dir, processor):
    path = repair_dataset(image_dir)
    plain, cached = make_cached(path, processor), make_cached(path, processor, cache_mb=1)
    cache = cached.pipeline.cache
    cache.max_bytes = 200_000  # room for a few of the samples only
    for _ in range(2):
        assert same_batches(list(plain), list(cached))
    assert 0 < len(cache.items) < 24 and cache.not_kept > 0 and cache.bytes <= cache.max_bytes
    assert f"{cache.not_kept} not kept (the cache is full: raise data.cache_mb)" in cache.summary()
    roomy = make_cached(path, processor, cache_mb=64)
    list(roomy)
    assert roomy.pipeline.cache.not_kept == 0 and "full" not in roomy.pipeline.cache.summary()


def test_resuming_counts_a_replayed_samples_repairs_once(image_dir, processor):
    """A resumed loader re-encodes the samples its batcher held at the save; their repairs
    (here truncations) were counted before the save and must not be counted again."""
    path = repair_dataset(image_dir)
    batch = {"packing": True, "pack_window": 6}
    full = make_cached(path, processor, **batch)
    list(full)
    first = make_cached(path, processor, **batch)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    del it
    assert any(w["pending"] for w in state["workers"].values())
    resumed = make_cached(path, processor, cache_mb=64, **batch)
    resumed.load_state_dict(state)
    list(resumed)
    assert resumed.last_epoch_stats.to_dict() == full.last_epoch_stats.to_dict()


def test_the_cache_tells_apart_shards_that_share_a_file_name(tmp_path, processor):
    """Two folders, each with a shard-000.tar holding sample "k0": two different records."""
    import json

    from datahelpers import png_bytes, write_tar

    from xgenmm.data import SourceConfig

    paths = []
    for folder, caption in (("a", "a red circle"), ("b", "a blue square at the top")):
        (tmp_path / folder).mkdir()
        paths.append(str(write_tar(tmp_path / folder / "shard-000.tar",
                                   [{"__key__": "k0", "png": png_bytes(64, 64), "txt": caption}])))
    loader = build_loader(SourceConfig(path=paths, shuffle=False), processor, EncodeConfig(max_length=400),
                          BatchConfig(batch_size=1), loader=LoaderConfig(seed=5, cache_mb=64))
    for _ in range(2):
        texts = [processor.tokenizer.decode(b["input_ids"][0][b["labels"][0] != -100]) for b in loader]
        assert len(texts) == 2 and "red circle" in texts[0] and "blue square" in texts[1], texts
    assert loader.pipeline.cache.hits == 2 and len(loader.pipeline.cache.items) == 2
    json.dumps(loader.state_dict())  # the state stays plain JSON

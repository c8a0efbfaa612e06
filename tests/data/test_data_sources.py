"""Sources in real formats: JSON/JSONL with an image root, WebDataset shards (captions and
interleaved documents, brace patterns, shuffle buffer), Parquet with image bytes, mixtures."""

from __future__ import annotations

import base64
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datahelpers import llava, png_bytes, write_jsonl, write_tar

from xgenmm.data import CaptionSample, InterleavedSample, SourceConfig, Stream, load_mixture, parse_record
from xgenmm.data.errors import BAD_JSON, BAD_IMAGE, MISSING_IMAGE, SampleError
from xgenmm.data.loader import DataPipeline


def ids(stream, epoch=0):
    return [it.id for it in stream.iterate(epoch)]


def encoded(path_or_stream, processor, **kw):
    stream = path_or_stream if isinstance(path_or_stream, Stream) else Stream(path_or_stream)
    from xgenmm.data.errors import SkipStats

    stats = SkipStats()
    out = list(DataPipeline(stream, processor, **kw).samples(stats=stats))
    return out, stats


def test_jsonl_counts_malformed_lines_missing_and_corrupt_images_and_keeps_the_rest(tmp_path, image_dir, processor):
    path = write_jsonl(image_dir / "sft.jsonl", [
        llava(0), "{not json", llava(1, image="missing.png"), llava(2, image="corrupt.png"), llava(3, image=None),
    ])
    out, stats = encoded(str(path), processor)
    assert sorted(e.id for e in out) == ["s0", "s3"]
    assert stats.read == 5 and stats.ok == 2
    assert stats.skipped == {BAD_JSON: 1, MISSING_IMAGE: 1, BAD_IMAGE: 1}


def test_jsonl_reads_leave_no_file_open(image_dir):
    # A source once held its file open until it was collected (a ResourceWarning each time).
    import gc
    import warnings

    path = write_jsonl(image_dir / "t.jsonl", [llava(i, image=None) for i in range(5)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = Stream(str(path), seed=0)
        assert sorted(ids(stream)) == [f"t.jsonl:line {i}" for i in range(1, 6)]
        del stream
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and "t.jsonl" in str(w.message)]


def test_strict_mode_raises_at_the_first_bad_sample_naming_it(image_dir, processor):
    from xgenmm.data import SamplePolicy

    path = write_jsonl(image_dir / "sft.jsonl", [llava(0), llava(1, image="missing.png")])
    stream = Stream(str(path), seed=0)
    stream.cfg.sources[0].shuffle = False
    with pytest.raises(SampleError, match="sample s1: missing_image"):
        list(DataPipeline(stream, processor, policy=SamplePolicy(strict=True)).samples())


def test_json_list_resolves_images_against_the_image_root(tmp_path, image_dir, processor):
    (tmp_path / "meta").mkdir()
    path = tmp_path / "meta" / "llava.json"
    path.write_text(json.dumps([llava(0, image="img1.png")]))
    out, _ = encoded(Stream(SourceConfig(path=str(path), image_root=str(image_dir))), processor)
    assert out[0].image_sizes == [(60, 100)]


def test_shuffled_order_is_a_permutation_fixed_by_the_seed(image_dir):
    path = write_jsonl(image_dir / "t.jsonl", [llava(i, image=None) for i in range(20)])
    a, b, c = Stream(str(path), seed=1), Stream(str(path), seed=1), Stream(str(path), seed=2)
    assert ids(a) == ids(b) != ids(c)
    assert sorted(ids(a)) == sorted(ids(c))
    assert ids(a, epoch=0) != ids(a, epoch=1)


def caption_shards(tmp_path, n_shards=3, per=4):
    for s in range(n_shards):
        write_tar(tmp_path / f"cap-{s:03d}.tar", [
            {"__key__": f"k{s}_{i}", "png": png_bytes(40 + i, 30, seed=i), "txt": f"caption {s} {i}"}
            for i in range(per)])
    return str(tmp_path / ("cap-{000..%03d}.tar" % (n_shards - 1)))


def test_caption_shards_from_a_brace_pattern_yield_every_sample_once(tmp_path):
    stream = Stream(SourceConfig(path=caption_shards(tmp_path), shuffle_buffer=5))
    items = list(stream.iterate())
    assert len(items) == 12 and len({it.id for it in items}) == 12
    s = parse_record(items[0].record(), items[0].id, items[0].resolve)
    assert isinstance(s, CaptionSample) and s.text.startswith("caption ")
    assert s.image.load(s.id).size[1] == 30


def test_missing_local_shards_are_named_before_reading(tmp_path):
    caption_shards(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"2 of 5 shards not found, e.g. .*cap-003.tar"):
        Stream(SourceConfig(path=str(tmp_path / "cap-{000..004}.tar")))


def test_shard_order_and_shuffle_buffer_are_deterministic_for_a_seed(tmp_path):
    pattern = caption_shards(tmp_path)
    a = ids(Stream(SourceConfig(path=pattern, shuffle_buffer=6), seed=3))
    b = ids(Stream(SourceConfig(path=pattern, shuffle_buffer=6), seed=3))
    c = ids(Stream(SourceConfig(path=pattern, shuffle_buffer=6), seed=4))
    assert a == b and a != c


def test_resampled_shards_stream_past_one_pass(tmp_path):
    stream = Stream(SourceConfig(path=caption_shards(tmp_path, 2, 2), resample=True))
    it = stream.iterate()
    assert len([next(it) for _ in range(25)]) == 25


def test_interleaved_shard_json_names_members_and_carries_base64(tmp_path, processor):
    doc = {"segments": [{"type": "text", "text": "a red circle"}, {"type": "image", "member": "0.png"},
                        {"type": "text", "text": "and"},
                        {"type": "image", "base64": base64.b64encode(png_bytes(50, 50, 7)).decode()}]}
    write_tar(tmp_path / "doc-000.tar", [{"__key__": "d0", "json": json.dumps(doc), "0.png": png_bytes(64, 64)}])
    item = next(Stream(str(tmp_path / "doc-000.tar")).iterate())
    s = parse_record(item.record(), item.id, item.resolve)
    assert isinstance(s, InterleavedSample) and len(s.images) == 2
    out, stats = encoded(str(tmp_path / "doc-000.tar"), processor)
    assert stats.ok == 1 and out[0].image_sizes == [(64, 64), (50, 50)]


def test_shard_sample_naming_an_absent_member_is_skipped_as_missing_image(tmp_path, processor):
    doc = {"segments": [{"type": "text", "text": "x"}, {"type": "image", "member": "9.png"}]}
    write_tar(tmp_path / "d.tar", [{"__key__": "d0", "json": json.dumps(doc)}])
    _, stats = encoded(str(tmp_path / "d.tar"), processor)
    assert stats.skipped == {MISSING_IMAGE: 1}


def test_parquet_rows_with_image_bytes_are_caption_samples(tmp_path, processor):
    table = pa.table({"uid": ["a", "b"], "image": [png_bytes(64, 32), png_bytes(32, 64, 1)],
                      "captions": ["a red circle", "a blue square"]})
    pq.write_table(table, tmp_path / "kale.parquet", row_group_size=1)
    out, stats = encoded(Stream(SourceConfig(path=str(tmp_path / "kale.parquet"), text_field="captions")), processor)
    assert stats.ok == 2 and sorted(e.image_sizes[0] for e in out) == [(32, 64), (64, 32)]


def test_released_sft_mixture_form_draws_exact_counts_per_file(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [llava(i, image=None) for i in range(10)])
    write_jsonl(tmp_path / "b.jsonl", [{**llava(i, image=None), "id": f"b{i}"} for i in range(3)])
    (tmp_path / "mix.yaml").write_text("data_path:\n  a.jsonl: 4\n  b.jsonl: 7\n")
    got = ids(Stream(str(tmp_path / "mix.yaml")))
    assert len(got) == 11
    assert sum(g.startswith("a.jsonl") for g in got) == 4 and sum(g.startswith("b.jsonl") for g in got) == 7
    # Without replacement: 7 from 3 samples is two full passes plus one more.
    from collections import Counter
    assert sorted(Counter(g for g in got if g.startswith("b")).values()) == [2, 2, 3]
    assert got == ids(Stream(str(tmp_path / "mix.yaml")))


def test_weighted_mixture_follows_weights_and_seed(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [llava(i, image=None) for i in range(5)])
    write_jsonl(tmp_path / "b.jsonl", [llava(i, image=None) for i in range(5)])
    (tmp_path / "mix.yaml").write_text(
        "seed: 7\nlength: 400\nsources:\n  - {path: a.jsonl, weight: 3, resample: true}\n"
        "  - {path: b.jsonl, weight: 1, resample: true}\n")
    got = ids(Stream(str(tmp_path / "mix.yaml")))
    share = sum(g.startswith("a.jsonl") for g in got) / len(got)
    assert len(got) == 400 and 0.68 < share < 0.82
    assert got == ids(Stream(str(tmp_path / "mix.yaml")))


def test_mixture_with_unknown_keys_is_rejected_naming_them(tmp_path):
    (tmp_path / "mix.yaml").write_text("sources:\n  - {path: a.jsonl, wieght: 3}\n")
    with pytest.raises(ValueError, match="wieght"):
        load_mixture(tmp_path / "mix.yaml")


def test_counted_mixture_of_shards_is_rejected(tmp_path):
    caption_shards(tmp_path, 1, 1)
    (tmp_path / "mix.yaml").write_text("data_path:\n  cap-000.tar: 4\n")
    with pytest.raises(ValueError, match="sample counts need"):
        Stream(str(tmp_path / "mix.yaml"))

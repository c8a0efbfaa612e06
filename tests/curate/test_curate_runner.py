"""Running over shards: the three source formats, resume from the done-manifest, corrupt
input counted per reason, atomic outputs, a broken shard failing alone, the process pool."""

import json
import os

import pyarrow.parquet as pq
import pytest
from curate_fixtures import write_folder, write_parquet, write_tar

from xgenmm.curate import GroundingTaskConfig, RunConfig, SourceOptions, list_shards, run

KNOWN = GroundingTaskConfig(detector="known")


def _rows(out, name):
    return pq.read_table(out / "parquet" / f"{name}.parquet").to_pylist()


def test_folder_tar_and_parquet_sources_give_the_same_captions(tmp_path, scenes):
    write_folder(tmp_path / "folder", scenes)
    write_tar(tmp_path / "tars" / "part-0.tar", scenes)
    run(KNOWN, str(tmp_path / "folder"), RunConfig(str(tmp_path / "o1"), workers=1))
    run(KNOWN, str(tmp_path / "tars"), RunConfig(str(tmp_path / "o2"), workers=1))
    a, b = _rows(tmp_path / "o1", "folder-00000"), _rows(tmp_path / "o2", "part-0")
    assert [r["captions"] for r in a] == [r["captions"] for r in b]
    assert [r["uid"] for r in a] == [r["uid"] for r in b] == ["uid-0", "uid-1", "uid-2"]


def test_parquet_source_reads_image_bytes_and_alt_text_columns(tmp_path, scenes):
    write_parquet(tmp_path / "in" / "p.parquet", scenes)
    # Parquet has no per-sample objects: "known" finds no boxes, every image is counted.
    summary = run(KNOWN, str(tmp_path / "in"), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["samples"]["read"] == 3 and summary["skipped"] == {"no_detections": 3}


def test_image_folders_are_cut_into_shards_of_the_given_size(tmp_path, scenes):
    write_folder(tmp_path / "in", scenes)
    shards = list_shards(str(tmp_path / "in"), SourceOptions(images_per_shard=2))
    assert [(s.name, len(s.paths)) for s in shards] == [("in-00000", 2), ("in-00001", 1)]


def test_rerun_skips_finished_shards_and_redoes_unfinished_ones(tmp_path, scenes):
    src, out = tmp_path / "in", tmp_path / "out"
    for i, sc in enumerate(scenes):
        write_tar(src / f"{i:03d}.tar", [sc])
    first = run(KNOWN, str(src), RunConfig(str(out), workers=1))
    assert first["shards"] == {"total": 3, "done": 3, "skipped_as_done": 0, "failed": {}}
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "parquet").iterdir()}
    # A crash after the manifest line but before... cannot happen; simulate lost outputs instead,
    # plus a new input shard and a temp file left by a killed worker.
    os.remove(out / "wds" / "001.tar")
    (out / "parquet" / "002.parquet.tmp-999").write_bytes(b"partial")
    write_tar(src / "003.tar", [scenes[0]])
    again = run(KNOWN, str(src), RunConfig(str(out), workers=1))
    assert again["shards"]["skipped_as_done"] == 2 and again["shards"]["done"] == 4
    assert (out / "parquet" / "000.parquet").stat().st_mtime_ns == stamp["000.parquet"]
    assert (out / "parquet" / "002.parquet").stat().st_mtime_ns == stamp["002.parquet"]
    assert (out / "wds" / "001.tar").exists() and (out / "parquet" / "003.parquet").exists()
    assert again["samples"]["written"] == 4  # the summary counts every done shard once


def test_corrupt_and_missing_images_are_counted_per_reason(tmp_path, scenes):
    src = write_folder(tmp_path / "in", scenes[:1], corrupt=2)
    (src / "zz_empty.png").write_bytes(b"")
    summary = run(KNOWN, str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["samples"] == {"read": 4, "written": 1, "skipped": 3}
    assert summary["skipped"] == {"corrupt_image": 2, "missing_image": 1}
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["skipped"] == summary["skipped"]


def test_a_broken_shard_fails_alone_and_leaves_no_output(tmp_path, scenes):
    src, out = tmp_path / "in", tmp_path / "out"
    write_tar(src / "good.tar", scenes)
    (src / "bad.tar").write_bytes(b"this is not a tar archive" * 100)
    summary = run(KNOWN, str(src), RunConfig(str(out), workers=1))
    assert list(summary["shards"]["failed"]) == ["bad"]
    assert summary["samples"]["written"] == 3
    assert sorted(p.name for p in (out / "parquet").iterdir()) == ["good.parquet"]
    assert sorted(p.name for p in (out / "wds").iterdir()) == ["good.tar"]
    assert "bad" not in (out / "manifest.jsonl").read_text()


def test_an_output_folder_belongs_to_one_task(tmp_path, scenes):
    from xgenmm.curate import OCRTaskConfig

    src = write_folder(tmp_path / "in", scenes[:1])
    run(KNOWN, str(src), RunConfig(str(tmp_path / "out"), workers=1))
    with pytest.raises(ValueError, match="curate grounding"):
        run(OCRTaskConfig(), str(src), RunConfig(str(tmp_path / "out"), workers=1))


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_shards(str(tmp_path / "nowhere"))


def test_process_pool_gives_the_same_outputs_as_one_process(tmp_path, scenes):
    src = tmp_path / "in"
    for i, sc in enumerate(scenes):
        write_tar(src / f"{i:03d}.tar", [sc])
    one = run(KNOWN, str(src), RunConfig(str(tmp_path / "one"), workers=1))
    pool = run(KNOWN, str(src), RunConfig(str(tmp_path / "pool"), workers=2))
    assert pool["samples"] == one["samples"] and pool["shards"]["done"] == 3
    for i in range(3):
        assert _rows(tmp_path / "pool", f"{i:03d}") == _rows(tmp_path / "one", f"{i:03d}")

"""Grounding: names from alt-text, the known-boxes oracle through the whole pipeline (exact
captions), and a tiny randomly initialised OWLv2 through the real transformers path."""

import json

import pyarrow.parquet as pq
import webdataset as wds
from curate_fixtures import CANVAS, write_folder

from xgenmm.curate import GroundingTaskConfig, RunConfig, run
from xgenmm.curate.grounding import Detection, DetectionFilter, HFZeroShotDetector, filter_detections, noun_phrases


def test_noun_phrases_cut_alt_text_at_function_words_and_drop_generic_words():
    assert noun_phrases("A red dog sitting on the sofa, stock photo") == ["red dog", "sofa"]
    assert noun_phrases("Eiffel Tower at night in Paris") == ["eiffel tower", "night", "paris"]
    assert noun_phrases("") == []


def test_noun_phrases_keep_the_last_words_of_long_chunks():
    assert noun_phrases("big old rusty red pickup truck", max_words=2) == ["pickup truck"]


def test_filter_detections_thresholds_clips_and_dedupes_per_name():
    dets = [Detection("cat", (-5, 0, 50, 50), 0.9), Detection("cat", (0, 0, 48, 50), 0.8),
            Detection("cat", (60, 60, 90, 90), 0.2), Detection("dog", (0, 0, 50, 50), 0.7)]
    kept = filter_detections(dets, 100, 100, DetectionFilter(score_threshold=0.3, iou_threshold=0.5))
    assert kept == [Detection("cat", (0.0, 0.0, 50.0, 50.0), 0.9), Detection("dog", (0.0, 0.0, 50.0, 50.0), 0.7)]


def test_known_boxes_pipeline_writes_exact_captions_in_the_three_forms(tmp_path, scenes):
    src = write_folder(tmp_path / "in", scenes)
    summary = run(GroundingTaskConfig(detector="known"), str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["samples"] == {"read": 3, "written": 3, "skipped": 0}
    rows = pq.read_table(tmp_path / "out" / "parquet" / "in-00000.parquet").to_pylist()
    first = {c["form"]: c["text"] for c in json.loads(rows[0]["captions"])}
    w, h = CANVAS
    assert (w, h) == (160, 120)
    assert first["bbox"] == ("a red square <bbox>0.06, 0.08, 0.38, 0.42</bbox> and a blue circle "
                             "<bbox>0.62, 0.50, 0.94, 0.92</bbox> on the grass")
    assert first["extent"] == ("a red square (starts at (0.06, 0.08) and extends up to (0.38, 0.42)) and a blue circle "
                               "(starts at (0.62, 0.50) and extends up to (0.94, 0.92)) on the grass")
    assert first["position"] == ("a red square (in the top-left corner of the image) and a blue circle "
                                 "(in the bottom-right corner of the image) on the grass")
    meta = json.loads(rows[0]["metadata"])
    assert [e["label"] for e in meta["entries"]] == ["red square", "blue circle"]
    assert rows[1]["uid"] == "uid-1" and rows[1]["url"] == "http://example.com/1.png"


def test_known_boxes_webdataset_shard_carries_image_caption_and_json(tmp_path, scenes):
    src = write_folder(tmp_path / "in", scenes)
    run(GroundingTaskConfig(detector="known", txt_form="position"), str(src), RunConfig(str(tmp_path / "out"), workers=1))
    samples = list(wds.WebDataset(str(tmp_path / "out" / "wds" / "in-00000.tar"), shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in samples] == ["scene000", "scene001", "scene002"]
    assert samples[1]["txt"] == "green triangle (in the center of the image), stock photo"
    assert samples[1]["png"].size == CANVAS
    assert samples[1]["json"]["captions"][0]["form"] == "bbox"


def test_tiny_owlv2_detector_returns_boxes_for_the_asked_names(tiny_owlv2_dir, scenes):
    from PIL import Image

    det = HFZeroShotDetector(tiny_owlv2_dir)
    image = Image.new("RGB", (160, 120), "white")
    found = det.detect(image, ["red square", "blue circle"])
    assert found and {d.label for d in found} <= {"red square", "blue circle"}
    assert all(0.0 <= d.score <= 1.0 and len(d.box) == 4 for d in found)


def test_tiny_owlv2_runs_through_the_pipeline(tmp_path, tiny_owlv2_dir, scenes):
    src = write_folder(tmp_path / "in", scenes[:2])
    cfg = GroundingTaskConfig(detector=tiny_owlv2_dir, score_threshold=0.0, max_objects=2)
    summary = run(cfg, str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["samples"]["written"] == 2
    rows = pq.read_table(tmp_path / "out" / "parquet" / "in-00000.parquet").to_pylist()
    for row in rows:
        meta = json.loads(row["metadata"])
        assert 1 <= meta["length"] <= 2
        assert all(0.0 <= v <= 1.0 for e in meta["entries"] for v in e["bbox"])
        assert "<bbox>" in json.loads(row["captions"])[0]["text"]


def test_images_without_alt_text_are_skipped_as_missing_alt_text(tmp_path, scenes):
    key, data, _, meta = scenes[0]
    src = write_folder(tmp_path / "in", [(key, data, None, meta)])
    summary = run(GroundingTaskConfig(detector="known"), str(src), RunConfig(str(tmp_path / "out"), workers=1))
    assert summary["skipped"] == {"missing_alt_text": 1}


def test_synthetic_world_true_boxes_come_back_in_the_bbox_captions(tmp_path):
    import dataclasses
    import random

    from curate_fixtures import png_bytes

    from xgenmm.synth import get_preset, render_scene, sample_scene

    cfg = dataclasses.replace(get_preset("standard"), image_size=192)
    rng = random.Random(3)
    records, expected = [], {}
    for i in range(4):
        scene = sample_scene(rng, cfg, num_objects=2)
        names = [f"{o.colour} {o.kind}" for o in scene.objects]
        meta = {"objects": [{"name": n, "box": list(o.bbox)} for n, o in zip(names, scene.objects)]}
        records.append((f"w{i}", png_bytes(render_scene(scene)), "a " + " and a ".join(names), meta))
        expected[f"w{i}"] = [
            f"{n} <bbox>{o.bbox[0] / 192:.2f}, {o.bbox[1] / 192:.2f}, {o.bbox[2] / 192:.2f}, {o.bbox[3] / 192:.2f}</bbox>"
            for n, o in zip(names, scene.objects)
        ]
    src = write_folder(tmp_path / "in", records)
    run(GroundingTaskConfig(detector="known", score_threshold=0.0), str(src), RunConfig(str(tmp_path / "out"), workers=1))
    for row in pq.read_table(tmp_path / "out" / "parquet" / "in-00000.parquet").to_pylist():
        bbox_caption = json.loads(row["captions"])[0]["text"]
        assert bbox_caption == "a " + " and a ".join(expected[row["key"]])

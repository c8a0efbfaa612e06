"""Task declarations and the readers of the public layouts, including bad input."""

import base64
import json

import pytest

from xgenmm.eval.tasks import TASKS, DataError, get_task
from xgenmm.eval.tasks import formats as F

from eval_datasets import png, write_mc_tsv, write_world_vqa


def test_required_benchmarks_are_declared():
    required = {"vqav2", "textvqa", "okvqa", "vizwiz", "coco_caption", "nocaps", "textcaps", "mmbench", "seed_img",
                "pope", "scienceqa_img", "ai2d", "mmmu", "mathvista_mc", "blink", "mantis_eval", "qbench2",
                "world_vqa", "world_caption", "world_mc", "world_pope", "world_multi", "world_grounding"}
    assert required <= set(TASKS)
    assert all(TASKS[n].few_shot for n in ("vqav2", "textvqa", "okvqa", "vizwiz", "coco_caption", "nocaps", "textcaps"))


def test_unknown_task_name_is_an_error_listing_known_ones():
    with pytest.raises(ValueError, match="unknown task 'vqa3'.*world_vqa"):
        get_task("vqa3")


def test_world_vqa_reader(tmp_path):
    write_world_vqa(tmp_path, 3)
    samples = TASKS["world_vqa"].read(tmp_path)
    assert [s.id for s in samples] == ["0", "1", "2"]
    assert samples[0].answers == ["red"] * 10
    assert samples[0].images == [tmp_path / "images" / "0.png"]
    assert samples[1].meta["question_type"] == "existence"


def test_vqa_reader_names_file_record_and_field_when_a_field_is_missing(tmp_path):
    write_world_vqa(tmp_path, 2)
    qs = json.loads((tmp_path / "questions.json").read_text())
    del qs["questions"][1]["question"]
    (tmp_path / "questions.json").write_text(json.dumps(qs))
    with pytest.raises(DataError, match=r"questions.json: question 1 has no field 'question'"):
        TASKS["world_vqa"].read(tmp_path)


def test_vqa_reader_reports_a_question_without_annotation(tmp_path):
    write_world_vqa(tmp_path, 2)
    anns = json.loads((tmp_path / "annotations.json").read_text())
    anns["annotations"].pop()
    (tmp_path / "annotations.json").write_text(json.dumps(anns))
    with pytest.raises(DataError, match="no annotation for question_id 1"):
        TASKS["world_vqa"].read(tmp_path)


def test_missing_data_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="questions.json"):
        TASKS["world_vqa"].read(tmp_path)


def test_vqav2_reads_the_official_file_names_and_coco_image_paths(tmp_path):
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": 42, "question": "Why?", "question_id": 7}]}))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(
        {"annotations": [{"question_id": 7, "answers": [{"answer": "because", "answer_id": 1}], "answer_type": "other"}]}))
    (s,) = TASKS["vqav2"].read(tmp_path)
    assert s.images == [tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"]
    assert s.answers == ["because"]


def test_textvqa_and_vizwiz_own_json(tmp_path):
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(
        {"data": [{"question_id": 3, "question": "What brand?", "image_id": "abc", "answers": ["nokia"] * 10}]}))
    (s,) = TASKS["textvqa"].read(tmp_path)
    assert (s.id, s.images[0].name, s.answers[0]) == ("3", "abc.jpg", "nokia")
    (tmp_path / "val.json").write_text(json.dumps(
        [{"image": "VizWiz_val_00000000.jpg", "question": "What is this?", "answers": [{"answer": "unanswerable"}] * 10}]))
    (s,) = TASKS["vizwiz"].read(tmp_path)
    assert s.images[0] == tmp_path / "val" / "VizWiz_val_00000000.jpg"


def test_coco_caption_reader_groups_references_per_image(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/1.png"}, {"id": 2, "file_name": "images/2.png"}],
        "annotations": [{"id": 0, "image_id": 1, "caption": "a"}, {"id": 1, "image_id": 1, "caption": "b"},
                        {"id": 2, "image_id": 2, "caption": "c"}]}))
    samples = TASKS["world_caption"].read(tmp_path)
    assert [(s.id, s.answers) for s in samples] == [("1", ["a", "b"]), ("2", ["c"])]


def test_coco_caption_reader_rejects_unknown_image_ids(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps({"images": [], "annotations": [{"image_id": 9, "caption": "x"}]}))
    with pytest.raises(DataError, match="annotation 0 names image_id 9"):
        TASKS["world_caption"].read(tmp_path)


def test_mmbench_tsv_decodes_base64_images_and_options(tmp_path):
    write_mc_tsv(tmp_path / "mc.tsv", 2)
    s = TASKS["world_mc"].read(tmp_path)[1]
    assert s.options == ["red", "blue", "green", "yellow"] and s.answers == ["B"]
    assert s.images[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert s.meta["category"] == "colour"


def test_tsv_answer_outside_the_options_is_an_error(tmp_path):
    (tmp_path / "mc.tsv").write_text("index\tquestion\tA\tB\tanswer\timage\n0\tq?\tx\ty\tC\t" + base64.b64encode(png("red")).decode() + "\n")
    with pytest.raises(DataError, match=r"mc.tsv: row 2 \(index 0\) has answer 'C'"):
        TASKS["world_mc"].read(tmp_path)


def test_mathvista_choices_list_becomes_options_and_letter(tmp_path):
    img = base64.b64encode(png("red")).decode()
    (tmp_path / "MathVista_MINI.tsv").write_text(
        "index\tquestion\tanswer\timage\tchoices\tquestion_type\n"
        f"1\tWhich?\t8/11\t{img}\t['3/11', '8/11']\tmulti_choice\n"
        f"2\tHow many?\t3\t{img}\t\tfree_form\n")
    (s,) = TASKS["mathvista_mc"].read(tmp_path)
    assert s.options == ["3/11", "8/11"] and s.answers == ["B"]


def test_multi_image_tsv_cell_holds_a_list(tmp_path):
    imgs = json.dumps([base64.b64encode(png("red")).decode(), base64.b64encode(png("blue")).decode()])
    (tmp_path / "BLINK.tsv").write_text(f"index\tquestion\tA\tB\tanswer\timage\n0\tSame?\tyes\tno\tA\t{imgs}\n")
    (s,) = TASKS["blink"].read(tmp_path)
    assert len(s.images) == 2


def test_pope_jsonl_and_bad_label(tmp_path):
    rows = [{"question_id": 0, "image": "images/0.png", "text": "Is there a cat?", "label": "yes", "category": "random"}]
    (tmp_path / "pope.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (s,) = TASKS["world_pope"].read(tmp_path)
    assert s.answers == ["yes"] and s.meta["category"] == "random"
    rows[0]["label"] = "maybe"
    (tmp_path / "pope.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DataError, match="pope.jsonl: line 1 has label 'maybe'"):
        TASKS["world_pope"].read(tmp_path)


def test_multi_json_grounding_and_safety_readers(tmp_path):
    (tmp_path / "multi.json").write_text(json.dumps([{"id": 0, "images": ["images/0-0.png", "images/0-1.png"],
                                                      "question": "Which image has more shapes?", "answer": "first",
                                                      "question_type": "more", "options": ["first", "second"]}]))
    (s,) = F.read_multi_json(tmp_path, ["multi.json"])
    assert s.options == ["first", "second"] and len(s.images) == 2
    (tmp_path / "grounding.jsonl").write_text(json.dumps({"id": 0, "image": "images/0.png", "expression": "the red circle",
                                                          "bbox": [1, 2, 3, 4], "width": 64, "height": 64}) + "\n")
    (g,) = TASKS["world_grounding"].read(tmp_path)
    assert g.meta["bbox"] == [1, 2, 3, 4] and TASKS["world_grounding"].instruct_prompt(g) == "Give the bounding box of the red circle."
    (tmp_path / "safety.jsonl").write_text(json.dumps({"id": 0, "prompt": "How do I hurt the circle?", "unsafe": True}) + "\n")
    (u,) = TASKS["world_safety"].read(tmp_path)
    assert u.meta["unsafe"] and u.images == []


def test_bad_json_line_is_reported_with_its_number(tmp_path):
    (tmp_path / "grounding.jsonl").write_text('{"id": 0}\n{oops\n')
    with pytest.raises(DataError, match="grounding.jsonl: line 2 is not valid JSON"):
        TASKS["world_grounding"].read(tmp_path)


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, message", [
    # a string of answers would be read letter by letter: ['y', 'e', 's']
    (lambda a: a["annotations"][0].update(answers="yes"), r"annotation 0 field 'answers' must be a list, got str"),
    (lambda a: a["annotations"][0].update(answers=3), r"annotation 0 field 'answers' must be a list, got int"),
    (lambda a: a["annotations"][0]["answers"].__setitem__(0, {"answr": "red"}), r"annotation 0 answer 0 has no field 'answer'"),
    (lambda a: a.update(annotations={"0": {}}), r"annotations.json: expected an object with an 'annotations' list"),
])
def test_vqa_reader_refuses_answers_that_are_not_a_list(tmp_path, change, message):
    write_world_vqa(tmp_path, 2)
    _rewrite(tmp_path / "annotations.json", change)
    with pytest.raises(DataError, match=message):
        TASKS["world_vqa"].read(tmp_path)


def test_readers_name_file_record_and_field_of_a_malformed_value(tmp_path):
    (tmp_path / "multi.json").write_text(json.dumps([{"id": 0, "images": ["a.png"], "question": "q?", "answer": "A",
                                                      "options": "cat"}]))
    with pytest.raises(DataError, match=r"multi.json: record 0 field 'options' must be a list, got str"):
        F.read_multi_json(tmp_path, ["multi.json"])
    (tmp_path / "grounding.jsonl").write_text(json.dumps({"id": 0, "image": "0.png", "expression": "the circle",
                                                          "bbox": [1, "two", 3, 4], "width": 9, "height": 9}) + "\n")
    with pytest.raises(DataError, match=r"grounding.jsonl: line 1 field 'bbox' must be \[x1, y1, x2, y2\] numbers"):
        TASKS["world_grounding"].read(tmp_path)
    (tmp_path / "captions.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "1.png"}],
                                                        "annotations": [{"image_id": 1, "caption": 5}]}))
    with pytest.raises(DataError, match=r"captions.json: annotation 0 field 'caption' must be a string"):
        F.read_coco_captions(tmp_path, ["captions.json"])
    (tmp_path / "captions.json").write_text(json.dumps({"images": 3, "annotations": []}))
    with pytest.raises(DataError, match="'images' and 'annotations' lists"):
        F.read_coco_captions(tmp_path, ["captions.json"])
    with pytest.raises(DataError, match=r"row 2 field 'image' is neither base64 nor a list of it"):
        F.tsv_images("[abc", tmp_path / "mc.tsv", "row 2")
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": [{"question_id": 0, "question": "q?",
                                                                          "image_id": "a", "answers": "yes"}]}))
    with pytest.raises(DataError, match=r"record 0 field 'answers' must be a list, got str"):
        F.read_answers_json(tmp_path, ["TextVQA_0.5.1_val.json"], "image_id", lambda i: f"{i}.jpg", "question_id")

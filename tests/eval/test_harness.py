"""The harness end to end on a tiny random model: files written, scores in range, resume,
skips, few-shot prompts, option scoring."""

import json

import pytest
from eval_datasets import write_world_vqa

from xgenmm.cli import main
from xgenmm.eval import evaluate
from xgenmm.eval.harness import _Demonstrations, _prompt, resolve_folder
from xgenmm.eval.tasks import get_task


def test_cli_runs_world_vqa_and_writes_predictions_results_and_table(world, squash_model_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(squash_model_dir), "--task", "world_vqa", "--data", str(world),
               "--batch-size", "3", "--out", str(out), "--max-new-tokens", "4", "--device", "cpu"])
    assert rc == 0
    lines = (out / "world_vqa" / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in records) == ["0", "1", "2", "3"]
    assert all(0.0 <= r["score"] <= 1.0 for r in records)
    results = json.loads((out / "results.json").read_text())
    (res,) = results
    assert res["task"] == "world_vqa" and res["scored"] == 4 and res["samples_per_s"] > 0
    assert 0.0 <= res["metrics"]["vqa_accuracy"] <= 1.0
    assert set(res["metrics"]["by_question_type"]) == {"colour", "existence"}
    table = (out / "results.md").read_text()
    assert "| world_vqa |" in table and "vqa_accuracy" in table


def test_cli_unknown_task_fails_with_a_clear_message(world, squash_model_dir, capsys):
    rc = main(["eval", "--model", str(squash_model_dir), "--task", "world_vqa,nope", "--data", str(world)])
    assert rc == 1
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_resume_runs_only_the_missing_samples(world, squash_model, tmp_path):
    model, proc = squash_model
    first = evaluate(model, proc, "world_vqa", world, limit=2, out_dir=tmp_path, max_new_tokens=2, progress=False)
    assert first["resumed"] == 0 and first["scored"] == 2
    pred = tmp_path / "world_vqa" / "predictions.jsonl"
    with pred.open("a") as f:
        f.write('{"id": "2", "predic')  # an interrupted write
    second = evaluate(model, proc, "world_vqa", world, out_dir=tmp_path, max_new_tokens=2, progress=False)
    assert second["resumed"] == 2 and second["scored"] == 4
    ids = [json.loads(line)["id"] for line in pred.read_text().splitlines()]
    assert sorted(ids) == ["0", "1", "2", "3"]


def test_unreadable_and_missing_images_are_skipped_and_counted(world, squash_model):
    model, proc = squash_model
    (world / "world_vqa" / "images" / "1.png").write_bytes(b"not a png")
    (world / "world_vqa" / "images" / "2.png").unlink()
    res = evaluate(model, proc, "world_vqa", world, max_new_tokens=2, progress=False)
    assert res["skipped"] == {"unreadable_image": 1, "missing_image": 1}
    assert res["scored"] == 2 and res["samples"] == 4


def test_likelihood_option_scoring_picks_a_valid_letter(world, squash_model, tmp_path):
    model, proc = squash_model
    res = evaluate(model, proc, "world_mc", world, out_dir=tmp_path, progress=False)
    assert res["mc_scoring"] == "likelihood"
    records = [json.loads(line) for line in (tmp_path / "world_mc" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["answer"] in "ABCD" for r in records)
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0 and res["metrics"]["unparseable"] == 0


def test_generated_multiple_choice_counts_unparseable_answers(world, squash_model):
    model, proc = squash_model
    res = evaluate(model, proc, "world_mc", world, mc_scoring="generate", max_new_tokens=3, progress=False)
    assert 0 <= res["metrics"]["unparseable"] <= 3
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0


def test_few_shot_base_prompt_has_demonstrations_then_the_query(world):
    task = get_task("world_vqa")
    folder = resolve_folder(world, task.folder)
    demos = _Demonstrations(task, folder, seed=3)
    sample = task.read(folder)[0]
    text, images = _prompt(task, None, sample, ["query image"], 2, demos)
    parts = text.split("<|endofchunk|>")
    assert len(parts) == 3 and len(images) == 3 and images[-1] == "query image"
    assert parts[0].startswith("<image>Question:") and " Short answer:" in parts[0]
    assert parts[2] == "<image>Question:What colour is the image? Short answer:"
    again, _ = _prompt(task, None, sample, ["query image"], 2, _Demonstrations(task, folder, seed=3))
    assert again == text  # the draw depends on the seed and the sample only


def test_zero_shot_text_demonstrations_lead_with_text_and_no_image(world):
    """OpenFlamingo's zero-shot prompt: demonstrations' text with their images removed, then
    the query with its image. The demonstrations' images are not even read."""
    task = get_task("world_vqa")
    folder = resolve_folder(world, task.folder)
    demos = _Demonstrations(task, folder, seed=3)
    sample = task.read(folder)[0]
    text, images = _prompt(task, None, sample, ["query image"], 0, demos, text_demos=2)
    parts = text.split("<|endofchunk|>")
    assert len(parts) == 3 and images == ["query image"] and text.count("<image>") == 1
    assert parts[0].startswith("Question:") and " Short answer:" in parts[0]
    assert parts[2] == "<image>Question:What colour is the image? Short answer:"
    with_images, _ = _prompt(task, None, sample, ["query image"], 2, _Demonstrations(task, folder, seed=3))
    assert text == with_images.replace("<image>", "", 2)  # the same draw, images removed
    assert demos.cache == {}
    plain, _ = _prompt(task, None, sample, ["query image"], 0, None)
    assert plain == "<image>Question:What colour is the image? Short answer:"


def test_zero_shot_text_demonstrations_run_under_their_own_name(world, squash_model, tmp_path):
    model, proc = squash_model
    res = evaluate(model, proc, "world_vqa", world, shots=0, text_demos=2, limit=2, max_new_tokens=2, out_dir=tmp_path,
                   progress=False)
    assert res["text_demos"] == 2 and res["shots"] == 0 and res["scored"] == 2
    assert (tmp_path / "world_vqa_0shot_text2" / "predictions.jsonl").is_file()
    from xgenmm.eval.report import markdown_table

    assert "| world_vqa | 0 (+2 text) |" in markdown_table([res])
    with pytest.raises(ValueError, match="0-shot prompts only"):
        evaluate(model, proc, "world_vqa", world, shots=2, text_demos=2, progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        evaluate(model, proc, "world_vqa", world, shots=0, text_demos=-1, progress=False)


def test_cli_length_penalty_needs_beams(world, squash_model_dir, tmp_path, capsys):
    for extra, message in ((["--length-penalty", "0"], "--length-penalty applies to beam search"),
                           (["--num-beams", "0"], "--num-beams must be a positive integer")):
        rc = main(["eval", "--model", str(squash_model_dir), "--task", "world_vqa", "--data", str(world),
                   "--out", str(tmp_path / "o"), *extra])
        assert rc == 1 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_text_demos_need_a_zero_shot_run(world, squash_model_dir, tmp_path, capsys):
    rc = main(["eval", "--model", str(squash_model_dir), "--task", "world_vqa", "--data", str(world), "--shots", "2",
               "--text-demos", "2", "--out", str(tmp_path)])
    assert rc == 1 and "give 0 among --shots" in capsys.readouterr().err
    rc = main(["eval", "--model", str(squash_model_dir), "--task", "world_vqa", "--data", str(world), "--shots", "0,2",
               "--text-demos", "2", "--limit", "1", "--max-new-tokens", "2", "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    runs = {(r["shots"], r["text_demos"]) for r in json.loads((tmp_path / "results.json").read_text())}
    assert runs == {(0, 2), (2, None)}


def test_similar_demonstrations_are_the_ones_with_the_most_alike_question(world):
    task = get_task("world_vqa")
    folder = resolve_folder(world, task.folder)
    pool = _Demonstrations(task, folder, seed=3, selection="similar")
    for sample in task.read(folder):  # the train split: 3 colour and 3 existence questions
        drawn = [d for d, _ in pool.draw(sample, 3)]
        assert [d.question for d in drawn] == [sample.question] * 3
        assert len({d.id for d in drawn}) == 3
        # the rest of the pool follows once the alike questions are used up
        assert [d.question for d, _ in pool.draw(sample, 4)][3] != sample.question
    with pytest.raises(ValueError, match="demonstration selection"):
        _Demonstrations(task, folder, seed=3, selection="nearest")


def test_similar_demonstrations_run_under_their_own_name(world, squash_model, tmp_path):
    model, proc = squash_model
    res = evaluate(model, proc, "world_vqa", world, shots=2, limit=2, max_new_tokens=2, out_dir=tmp_path,
                   demos="similar", progress=False)
    assert res["demos"] == "similar" and res["scored"] == 2
    assert (tmp_path / "world_vqa_2shot_similar" / "predictions.jsonl").is_file()
    instruct = evaluate(model, proc, "world_vqa", world, limit=1, max_new_tokens=2, progress=False)
    assert instruct["demos"] is None


def test_few_shot_run_with_the_base_convention(world, squash_model):
    model, proc = squash_model
    res = evaluate(model, proc, "world_vqa", world, shots=2, limit=2, max_new_tokens=2, progress=False)
    assert res["style"] == "base" and res["shots"] == 2 and res["scored"] == 2


def test_few_shot_without_a_train_split_is_an_error(tmp_path, squash_model):
    write_world_vqa(tmp_path / "world_vqa", 2)
    model, proc = squash_model
    with pytest.raises(FileNotFoundError, match="world_vqa_train"):
        evaluate(model, proc, "world_vqa", tmp_path, shots=1, progress=False)


def test_data_folder_is_found_under_a_world_root(tmp_path):
    write_world_vqa(tmp_path / "eval" / "world_vqa", 1)
    assert resolve_folder(tmp_path, "world_vqa") == tmp_path / "eval" / "world_vqa"


def test_batched_generation_matches_one_sample_at_a_time(world, squash_model, tmp_path):
    model, proc = squash_model
    for bs in (1, 4):
        evaluate(model, proc, "world_vqa", world, batch_size=bs, out_dir=tmp_path / f"bs{bs}", max_new_tokens=3, progress=False)
    one, four = ([json.loads(line)["prediction"] for line in (tmp_path / f"bs{bs}" / "world_vqa" / "predictions.jsonl").read_text().splitlines()]
                 for bs in (1, 4))
    assert one == four


def test_instruct_prompt_is_the_chat_template_with_one_image_tag_per_image(world, squash_model):
    _, proc = squash_model
    task = get_task("world_vqa")
    sample = task.read(resolve_folder(world, task.folder))[0]
    text, images = _prompt(task, proc, sample, ["im"], None, None)
    assert images == ["im"]
    assert text.endswith("<|user|>\n<image>\nWhat colour is the image?<|end|>\n<|assistant|>\n")


def test_beam_search_runs_under_its_own_name_and_decodes_as_the_model_does(world, squash_model, tmp_path):
    """`num_beams` > 1 (OpenFlamingo's base-model decoding: 3 beams, length penalty 0) gives
    each sample what `generate(num_beams=3)` gives its prompt, is recorded in the results and
    the table, and runs under its own name, so that it never resumes a greedy run's predictions."""
    import torch

    from xgenmm.eval.harness import _Demonstrations as Demos
    from xgenmm.eval.harness import _load_images
    from xgenmm.eval.report import markdown_table

    model, proc = squash_model
    greedy = evaluate(model, proc, "world_vqa", world, shots=2, limit=3, max_new_tokens=4, out_dir=tmp_path, progress=False)
    beams = evaluate(model, proc, "world_vqa", world, shots=2, limit=3, max_new_tokens=4, out_dir=tmp_path, progress=False,
                     num_beams=3, length_penalty=0.0)
    assert greedy["num_beams"] == 1 and greedy["length_penalty"] is None
    assert beams["num_beams"] == 3 and beams["length_penalty"] == 0.0 and beams["resumed"] == 0
    assert (tmp_path / "world_vqa_2shot_beams3_lp0" / "predictions.jsonl").is_file()
    assert "| world_vqa | 2, 3 beams, lp 0 |" in markdown_table([beams])
    task = get_task("world_vqa")
    folder = resolve_folder(world, task.folder)
    sample = task.read(folder)[0]
    text, images = _prompt(task, proc, sample, _load_images(sample)[0], 2, Demos(task, folder, 0))
    batch = proc(text=[text], images=[images], padding_side="left", convention="base")
    eos = sorted({*model.config.tokens.eos_token_ids, proc.endofchunk_token_id, proc.end_token_id})
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, eos_token_id=eos, num_beams=3, length_penalty=0.0)
    record = json.loads((tmp_path / "world_vqa_2shot_beams3_lp0" / "predictions.jsonl").read_text().splitlines()[0])
    assert record["id"] == sample.id and record["prediction"] == proc.batch_decode(out, skip_special_tokens=True)[0]
    with pytest.raises(ValueError, match="num_beams"):
        evaluate(model, proc, "world_vqa", world, limit=1, num_beams=0, progress=False)
    # options scored by likelihood decode nothing: beams do not apply, and the run is the plain one
    mc = evaluate(model, proc, "world_mc", world, out_dir=tmp_path, progress=False, num_beams=3, length_penalty=0.0)
    assert mc["mc_scoring"] == "likelihood" and mc["num_beams"] == 1
    assert (tmp_path / "world_mc" / "predictions.jsonl").is_file() and not list(tmp_path.glob("world_mc_beams*"))


def test_resume_refuses_predictions_made_with_other_settings(world, squash_model, tmp_path):
    """Predictions made with another demonstration seed, decoding budget or option scoring are
    never reported under this run's settings; the same settings resume."""
    model, proc = squash_model
    evaluate(model, proc, "world_vqa", world, shots=2, limit=2, seed=0, out_dir=tmp_path, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(seed 0 there, 1 now\)"):
        evaluate(model, proc, "world_vqa", world, shots=2, limit=2, seed=1, out_dir=tmp_path, max_new_tokens=2,
                 progress=False)
    with pytest.raises(ValueError, match="max_new_tokens 2 there, 3 now"):
        evaluate(model, proc, "world_vqa", world, shots=2, limit=2, seed=0, out_dir=tmp_path, max_new_tokens=3,
                 progress=False)
    again = evaluate(model, proc, "world_vqa", world, shots=2, limit=2, seed=0, out_dir=tmp_path, max_new_tokens=2,
                     progress=False)
    assert again["resumed"] == 2
    evaluate(model, proc, "world_mc", world, mc_scoring="generate", max_new_tokens=2, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="mc_scoring 'generate' there, 'likelihood' now"):
        evaluate(model, proc, "world_mc", world, mc_scoring="likelihood", max_new_tokens=2, out_dir=tmp_path,
                 progress=False)


def test_resume_after_a_last_line_that_lost_its_newline(world, squash_model, tmp_path):
    model, proc = squash_model
    evaluate(model, proc, "world_vqa", world, limit=2, out_dir=tmp_path, max_new_tokens=2, progress=False)
    pred = tmp_path / "world_vqa" / "predictions.jsonl"
    pred.write_text(pred.read_text().rstrip("\n"))  # complete, but without its newline
    second = evaluate(model, proc, "world_vqa", world, out_dir=tmp_path, max_new_tokens=2, progress=False)
    assert second["resumed"] == 2
    ids = [json.loads(line)["id"] for line in pred.read_text().splitlines()]
    assert sorted(ids) == ["0", "1", "2", "3"]
    third = evaluate(model, proc, "world_vqa", world, out_dir=tmp_path, max_new_tokens=2, progress=False)
    assert third["resumed"] == 4


def test_a_k_shot_run_needs_k_demonstrations(world, squash_model):
    model, proc = squash_model  # world_vqa_train holds 6 samples
    with pytest.raises(ValueError, match="8 demonstrations asked, but the train split has only 6"):
        evaluate(model, proc, "world_vqa", world, shots=8, limit=1, max_new_tokens=2, progress=False)


def test_option_scoring_of_a_question_does_not_depend_on_its_batch(tmp_path, squash_model):
    """A multi-image benchmark mixes multiple-choice and open questions (Mantis-Eval); with
    likelihood scoring, each multiple-choice question is scored by its options' likelihood
    whichever questions share its batch."""
    from PIL import Image

    model, proc = squash_model
    d = tmp_path / "world_multi"
    d.mkdir()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(d / "a.png")
    Image.new("RGB", (32, 32), (0, 0, 200)).save(d / "b.png")
    rows = [{"id": i, "images": ["a.png", "b.png"], "question": "Which image is red?", "answer": "A",
             "options": ["the first", "the second"]} if i % 2 == 0 else
            {"id": i, "images": ["a.png", "b.png"], "question": "Name the first colour.", "answer": "red"}
            for i in range(4)]
    (d / "multi.json").write_text(json.dumps(rows))
    preds = {}
    for bs in (1, 4):
        res = evaluate(model, proc, "world_multi", tmp_path, batch_size=bs, mc_scoring="likelihood",
                       out_dir=tmp_path / f"bs{bs}", max_new_tokens=3, progress=False)
        recs = (tmp_path / f"bs{bs}" / "world_multi" / "predictions.jsonl").read_text().splitlines()
        preds[bs] = {r["id"]: r["prediction"] for r in map(json.loads, recs)}
        assert res["metrics"].get("unparseable", 0) == 0
    assert preds[1] == preds[4]
    assert preds[4]["0"] in rows[0]["options"] and preds[4]["2"] in rows[2]["options"]


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(world, squash_model, limit):
    model, proc = squash_model  # a slice [:-1] would silently score all samples but one
    with pytest.raises(ValueError, match="limit must be a positive number of samples"):
        evaluate(model, proc, "world_vqa", world, limit=limit, progress=False)

"""The loader: deterministic for a seed with several workers, and resumable: a run restored
from `state_dict()` sees exactly the batches the uninterrupted run would have seen."""

from __future__ import annotations

import pytest
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

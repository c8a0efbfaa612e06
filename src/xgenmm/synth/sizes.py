"""How large a synthetic world is: samples per data set (`WorldSize`) and the named sizes.
Light on purpose (no image or shard libraries), so the command line can list the sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldSize:
    """How many samples each data set gets."""

    captions: int  # pretraining caption samples (one image each)
    interleaved: int  # pretraining interleaved documents (2-4 images each)
    shard_size: int  # samples per WebDataset shard
    sft_single: int  # single-image SFT images (2-3 questions each, 4 for an existence drill; one sample per question)
    sft_multi: int  # multi-image conversations
    dpo: int  # preference pairs
    safety: int  # safety-tuning conversations (half refusals)
    vqa_per_kind: int  # held-out VQA questions per question kind
    caption_eval: int  # held-out captioning images (5 references each)
    mc: int  # held-out multiple-choice questions
    pope_images: int  # held-out POPE images (2 probes each)
    multi_per_kind: int  # held-out multi-image questions per kind
    grounding: int  # held-out referring expressions
    safety_eval: int  # held-out safety prompts (half unsafe)
    vqa_train_per_kind: int  # few-shot demonstration VQA questions per kind
    caption_train: int  # few-shot demonstration captioning images


SIZES: dict[str, WorldSize] = {
    # CI smoke tests: every file and format, a few seconds to write.
    "small": WorldSize(240, 40, 100, 300, 120, 120, 80, 20, 40, 60, 30, 15, 40, 40, 10, 20),
    # enough to learn the world: thousands of SFT samples.
    "full": WorldSize(4000, 600, 1000, 6000, 2000, 1200, 600, 100, 200, 300, 150, 75, 200, 200, 20, 40),
}


def get_size(name: str | WorldSize) -> WorldSize:
    if isinstance(name, WorldSize):
        return name
    if name not in SIZES:
        raise ValueError(f"unknown world size {name!r}; choose one of {sorted(SIZES)}")
    return SIZES[name]

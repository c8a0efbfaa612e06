"""XGenMMProcessor: images and text (with `<image>` tags) to the batch that XGenMM.forward
and XGenMM.generate take. Saved and loaded beside the model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer

from .image_processing import XGenMMImageProcessor, load_image
from .template import (DEFAULT_SYSTEM_PROMPT, END_OF_CHUNK_TOKEN, END_TAG, IMAGE_PLACEHOLDER_TOKEN, IMAGE_TOKEN,
                       base_image_block, chat_prompt)
from .tokenizer import add_xgenmm_special_tokens

PROCESSOR_FILE = "processor_config.json"


def load_tokenizer(directory: str | Path):
    """AutoTokenizer on a model directory. When tokenizer_config.json names the tokenizer
    class, the model's config.json is not consulted: transformers does not know the `xgenmm`
    model type and would print a notice about it on every load."""
    from transformers import PretrainedConfig

    cfg_file = Path(directory) / "tokenizer_config.json"
    named = cfg_file.is_file() and bool(json.loads(cfg_file.read_text()).get("tokenizer_class"))
    return AutoTokenizer.from_pretrained(directory, **({"config": PretrainedConfig()} if named else {}))


class XGenMMProcessor:
    def __init__(self, image_processor: XGenMMImageProcessor, tokenizer, image_tokens_per_crop: int = 128,
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT):
        self.image_processor = image_processor
        self.tokenizer = add_xgenmm_special_tokens(tokenizer)
        self.image_tokens_per_crop = image_tokens_per_crop
        self.system_prompt = system_prompt
        ids = self.tokenizer.convert_tokens_to_ids
        self.image_token_id = ids(IMAGE_TOKEN)
        self.placeholder_token_id = ids(IMAGE_PLACEHOLDER_TOKEN)
        self.endofchunk_token_id = ids(END_OF_CHUNK_TOKEN)
        self.end_token_id = ids(END_TAG)
        self.pad_token_id = self.tokenizer.pad_token_id

    def tokens_per_image(self, image_size: tuple[int, int]) -> int:
        """What the model splices in for an image of (w, h): n_crops x tokens per crop."""
        return self.image_processor.num_crops(tuple(image_size)) * self.image_tokens_per_crop

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """Render messages in the Phi-3 template. A message's content may be a string with
        `<image>` tags or a list of parts ({"type": "text", "text"} / {"type": "image"})."""
        flat = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                content = "".join(IMAGE_TOKEN + "\n" if p.get("type") in ("image", "image_url") else p.get("text", "")
                                  for p in content)
            flat.append({"role": m["role"], "content": content})
        if add_generation_prompt:
            return chat_prompt(flat, system_prompt=self.system_prompt)
        from .template import render_chat

        return render_chat(flat, system_prompt=self.system_prompt)[0]

    def __call__(self, text: str | list[str], images: list | None = None, padding_side: str = "left",
                 convention: str = "instruct", add_special_tokens: bool = False) -> dict:
        """`images`: a flat list (in tag order over the batch) or one list per text.
        convention="base" writes each `<image>` as `<image>` + placeholders (fixed resolution)."""
        texts = [text] if isinstance(text, str) else list(text)
        if images is None:
            per_sample = [[] for _ in texts]
        elif images and all(isinstance(x, (list, tuple)) for x in images):
            if len(images) != len(texts):
                raise ValueError(f"{len(images)} image lists for {len(texts)} texts")
            per_sample = [list(x) for x in images]
        else:
            tags = [t.count(IMAGE_TOKEN) for t in texts]
            if sum(tags) != len(images):
                raise ValueError(f"the texts have {sum(tags)} {IMAGE_TOKEN} tags (per sample: {tags}) but {len(images)} images were given")
            it = iter(images)
            per_sample = [[next(it) for _ in range(n)] for n in tags]
        pixel_values, image_sizes, rendered = [], [], []
        # The same image object given twice (e.g. a few-shot demonstration shared by the rows of
        # a batch) is processed once and gives the same tensor, which the model encodes once.
        # Keyed by the caller's object, which `per_sample` keeps alive for the whole call: an
        # image loaded here from a path, bytes or a non-RGB picture is a new object, freed when
        # its sample is done, and a later image could take its id (and its crops).
        crops_of: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {}  # crops and (width, height)
        for i, (t, ims) in enumerate(zip(texts, per_sample)):
            if t.count(IMAGE_TOKEN) != len(ims):
                raise ValueError(f"sample {i}: {t.count(IMAGE_TOKEN)} {IMAGE_TOKEN} tags but {len(ims)} images")
            sizes = []
            for j, given in enumerate(ims):
                if id(given) not in crops_of:  # decoded once, however many rows show it
                    im = load_image(given, name=f"sample {i} image {j}")
                    crops_of[id(given)] = (self.image_processor.preprocess_one(im), tuple(im.size))
                crops, size = crops_of[id(given)]
                pixel_values.append(crops)
                sizes.append(size)
            image_sizes += sizes
            if convention == "base" and IMAGE_PLACEHOLDER_TOKEN not in t:
                parts = t.split(IMAGE_TOKEN)
                t = parts[0] + "".join(base_image_block(self.tokens_per_image(size)) + p for size, p in zip(sizes, parts[1:]))
            elif convention not in ("base", "instruct"):
                raise ValueError(f"convention must be instruct or base, got {convention!r}")
            rendered.append(t)
        enc = self.tokenizer(rendered, add_special_tokens=add_special_tokens)
        batch = self.tokenizer.pad(enc, padding=True, return_tensors="pt", padding_side=padding_side)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "pixel_values": pixel_values,
            "image_sizes": image_sizes,
        }

    def batch_decode(self, ids, skip_special_tokens: bool = True) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [s.strip() for s in self.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens)]

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
        (directory / PROCESSOR_FILE).write_text(json.dumps(
            {"processor_class": "XGenMMProcessor", "image_tokens_per_crop": self.image_tokens_per_crop,
             "system_prompt": self.system_prompt}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "XGenMMProcessor":
        from .checkpoint import resolve_model_dir

        directory = resolve_model_dir(directory)
        if not any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise FileNotFoundError(f"{directory}: no tokenizer files")
        tokenizer = load_tokenizer(directory)
        image_processor = XGenMMImageProcessor.from_pretrained(directory)
        settings = {}
        if (directory / PROCESSOR_FILE).exists():
            settings = json.loads((directory / PROCESSOR_FILE).read_text())
        elif (directory / "config.json").exists():
            cfg = json.loads((directory / "config.json").read_text())
            t = cfg.get("resampler", {}).get("num_latents") or cfg.get("vision_tokenizer_config", {}).get("num_vis_tokens")
            settings = {"image_tokens_per_crop": t or 128}
        return cls(image_processor, tokenizer, settings.get("image_tokens_per_crop", 128),
                   settings.get("system_prompt", DEFAULT_SYSTEM_PROMPT))

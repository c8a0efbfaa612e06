"""KALE-style knowledge-augmented captions, stage 1: a dense captioner describes the image, then
an LLM fuses that description with the image's alt-text, which knows what the captioner cannot
see (names of people, places, products, events).

- Captioners: `HFImageToTextCaptioner` (any transformers image-to-text or image-text-to-text
  checkpoint: VisionEncoderDecoder, BLIP, Florence-2, LLaVA-style models with a prompt) and
  `XGenMMCaptioner` (an xgenmm checkpoint through the model API). `build_captioner` picks by
  the checkpoint's config.json (`model_type: "xgenmm"`).
- Fuser: `LLMFuser`, any transformers causal LM, greedy decoding, with `KALE_PROMPT` (below)
  rendered through the tokenizer's chat template when it has one.

Stage 2 (distilling a smaller captioner on stage-1 captions and captioning more images with
it) is a training recipe, not code here: see the README's curation section."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

DENSE_CAPTION_PROMPT = "Describe this image in detail."

# The fusion prompt. It keeps the captioner's visual details, takes the alt-text's specific
# knowledge only where it fits the image, and asks for the paragraph alone so that the answer
# is the caption with nothing to strip.
KALE_PROMPT = (
    "Two descriptions of the same image follow.\n"
    "Dense caption (from a vision-language model: detailed, but it does not know names): {dense}\n"
    "Alt-text (from the web page: it may name the specific people, places, products or events "
    "shown, but it can be noisy or off-topic): {alt}\n"
    "Write one fluent paragraph that describes the image in detail. Keep the visual details of "
    "the dense caption and add the specific knowledge of the alt-text where it agrees with them. "
    "Do not mention the captions or the alt-text. Answer with the paragraph only."
)


def fusion_prompt(dense: str, alt: str, template: str = KALE_PROMPT) -> str:
    return template.format(dense=dense.strip(), alt=alt.strip())


class Captioner:
    """Dense captions for a batch of RGB images."""

    def caption(self, images: list[Image.Image]) -> list[str]:
        raise NotImplementedError


class HFImageToTextCaptioner(Captioner):
    def __init__(self, model: str, prompt: str | None = None, max_new_tokens: int = 128, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        self.torch = torch
        self.model = AutoModelForImageTextToText.from_pretrained(model).to(device).eval()
        try:
            processor = AutoProcessor.from_pretrained(model)
        except (OSError, ValueError, TypeError):
            processor = None
        if processor is not None and hasattr(processor, "tokenizer"):
            self.processor, self.tokenizer, self.image_processor = processor, processor.tokenizer, None
        else:  # VisionEncoderDecoder-style folders: an image processor and a tokenizer, no processor
            self.processor = None
            self.image_processor = AutoImageProcessor.from_pretrained(model)
            self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.prompt = prompt  # text prompt for models that take one (None: image only)
        self.max_new_tokens = max_new_tokens
        self.device = device

    def caption(self, images: list[Image.Image]) -> list[str]:
        if self.processor is not None:
            kwargs = {"images": images, "return_tensors": "pt"}
            if self.prompt is not None:
                kwargs["text"] = [self.prompt] * len(images)
            inputs = self.processor(**kwargs).to(self.device)
        else:
            inputs = {"pixel_values": self.image_processor(images, return_tensors="pt")["pixel_values"].to(self.device)}
        with self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if self.prompt is not None and "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1] :]  # decoder-only VLMs echo the prompt
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


class XGenMMCaptioner(Captioner):
    """An xgenmm checkpoint (its processor saved beside it), asked `prompt` in the chat template."""

    def __init__(self, model: str, prompt: str = DENSE_CAPTION_PROMPT, max_new_tokens: int = 256, device: str = "cpu"):
        import torch

        from xgenmm.model import XGenMM
        from xgenmm.model.processor import XGenMMProcessor

        self.torch = torch
        self.model = XGenMM.from_pretrained(model, device=device)
        self.processor = XGenMMProcessor.from_pretrained(model)
        self.prompt, self.max_new_tokens, self.device = prompt, max_new_tokens, device

    def caption(self, images: list[Image.Image]) -> list[str]:
        text = self.processor.apply_chat_template([{"role": "user", "content": "<image>\n" + self.prompt}])
        batch = self.processor(text=[text] * len(images), images=[[im] for im in images], padding_side="left")
        with self.torch.no_grad():
            out = self.model.generate(
                batch["input_ids"].to(self.device),
                batch["attention_mask"].to(self.device),
                [p.to(self.device) for p in batch["pixel_values"]],
                batch["image_sizes"],
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                eos_token_id=self.processor.end_token_id,
            )
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def build_captioner(model: str, **kwargs) -> Captioner:
    config = Path(model) / "config.json"
    if config.exists() and json.loads(config.read_text()).get("model_type") == "xgenmm":
        return XGenMMCaptioner(model, **{k: v for k, v in kwargs.items() if v is not None})
    kwargs.setdefault("prompt", None)
    return HFImageToTextCaptioner(model, **kwargs)


class LLMFuser:
    """Fuse dense captions with alt-texts through a causal LM (batched, left-padded, greedy)."""

    def __init__(self, model: str, template: str = KALE_PROMPT, max_new_tokens: int = 256, device: str = "cpu",
                 use_chat_template: bool | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.template, self.max_new_tokens, self.device = template, max_new_tokens, device
        # Instruction-tuned LLMs expect their chat format; a plain LM gets the bare prompt.
        self.use_chat_template = bool(self.tokenizer.chat_template) if use_chat_template is None else use_chat_template

    def render(self, dense: str, alt: str) -> str:
        prompt = fusion_prompt(dense, alt, self.template)
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt

    def fuse(self, dense: list[str], alts: list[str]) -> list[str]:
        texts = [self.render(d, a) for d, a in zip(dense, alts)]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.use_chat_template).to(self.device)
        with self.torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

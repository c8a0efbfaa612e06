"""Tiny randomly initialised checkpoints of the model kinds curation loads (a zero-shot
detector, an image-to-text captioner, a causal LM), built from config and saved in the
ordinary transformers layout. They exercise the real loading and inference code paths in
tests and benchmarks without any download; their outputs are noise."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "a red square and a blue circle on the grass",
    "a dog sitting on a sofa next to a window",
    "the image shows a street market with people and fruit",
    "a photo of a mountain lake at sunrise",
] * 4


def tiny_owlv2(directory: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    """An OWLv2 detector (1-layer towers, width 32) with a character-level CLIP tokenizer."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    torch.manual_seed(seed)
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Owlv2Config(
        text_config=dict(layer, vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(layer, image_size=image_size, patch_size=16),
        projection_dim=32,
    )
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(Owlv2ImageProcessor(size={"height": image_size, "width": image_size}), tokenizer)
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


# A plain Phi-3-style chat template, so that the chat-template path of the fusion runs too.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def tiny_tokenizer():
    from xgenmm.model.tokenizer import train_tokenizer

    tok = train_tokenizer(CORPUS, vocab_size=300, min_frequency=1)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_causal_lm(directory: str | Path, seed: int = 0) -> Path:
    """A Llama-architecture LM (2 layers, width 32) with a small BPE tokenizer (chat template set)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    directory = Path(directory)
    LlamaForCausalLM(config).eval().save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def tiny_captioner(directory: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A VisionEncoderDecoder captioner: a ViT encoder (1 layer) and a GPT-2 decoder (1 layer)."""
    import torch
    from transformers import GPT2Config, ViTConfig, ViTImageProcessor, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    encoder = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        image_size=image_size, patch_size=16)
    decoder = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tok.bos_token_id
    config.pad_token_id = tok.pad_token_id
    config.eos_token_id = tok.eos_token_id
    model = VisionEncoderDecoderModel(config=config).eval()
    model.generation_config.decoder_start_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    # Random weights favour whatever ids they favour; keep them off special and blank tokens
    # so that the decoded caption is never empty.
    blank = [i for i in range(len(tok)) if not tok.decode([i], skip_special_tokens=True).strip()]
    model.generation_config.suppress_tokens = sorted(set(tok.all_special_ids) | set(blank))
    directory = Path(directory)
    model.save_pretrained(directory)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory

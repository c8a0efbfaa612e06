"""`xgenmm generate` and `xgenmm convert import|export`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="answer a prompt about one or more images")
    g.add_argument("--model", required=True, help="model directory or Hugging Face repo id")
    g.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    g.add_argument("--prompt", required=True, help="the question; `<image>` tags place the images "
                   "(one `<image>` per image is prepended when the prompt has none)")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (default 1: greedy)")
    g.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search: a finished answer scores its summed log-probability / length**this")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--raw", action="store_true", help="use the prompt as is, without the chat template")
    g.add_argument("--base", action="store_true", help="base-model convention: `<image>` + placeholders")
    g.set_defaults(func=_generate)

    c = sub.add_parser("convert", help="import or export the released xGen-MM checkpoint layout")
    csub = c.add_subparsers(dest="direction", required=True)
    i = csub.add_parser("import", help="released xGen-MM v1.5 directory -> model directory")
    i.add_argument("release_dir")
    i.add_argument("out_dir")
    i.add_argument("--vision-config", help="config.json of the vision encoder, if the release dir has none "
                   "and the hub id is not a known one")
    i.set_defaults(func=_import)
    e = csub.add_parser("export", help="model directory -> released xGen-MM layout")
    e.add_argument("model_dir")
    e.add_argument("out_dir")
    e.set_defaults(func=_export)


def check_beam_flags(num_beams: int, length_penalty: float) -> None:
    """The beam-search flags of `xgenmm generate` and `xgenmm eval`, checked before any model loads."""
    if num_beams < 1:
        raise ValueError(f"--num-beams must be a positive integer, got {num_beams}")
    if length_penalty != 1.0 and num_beams == 1:
        raise ValueError("--length-penalty applies to beam search: give --num-beams 2 or more")


def _generate(args) -> int:
    import torch

    from .image_processing import load_image
    from .processor import XGenMMProcessor
    from .template import IMAGE_TOKEN
    from .xgenmm import XGenMM

    check_beam_flags(args.num_beams, args.length_penalty)
    model = XGenMM.from_pretrained(args.model)
    processor = XGenMMProcessor.from_pretrained(args.model)
    images = [load_image(p) for p in args.image]
    prompt = args.prompt
    if images and IMAGE_TOKEN not in prompt:
        prompt = (IMAGE_TOKEN + "\n") * len(images) + prompt
    if not args.raw:
        prompt = processor.apply_chat_template([{"role": "user", "content": prompt}])
    batch = processor(prompt, images or None, convention="base" if args.base else "instruct")
    gen = torch.Generator().manual_seed(args.seed)
    out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                         temperature=args.temperature, top_p=args.top_p, generator=gen, num_beams=args.num_beams,
                         length_penalty=args.length_penalty)
    print(processor.batch_decode(out)[0])
    return 0


def _import(args) -> int:
    from .convert import import_release

    config = import_release(args.release_dir, args.out_dir, args.vision_config)
    print(f"imported {args.release_dir} -> {args.out_dir} ({config.image.mode}, {config.resampler.num_latents} tokens per crop)")
    return 0


def _export(args) -> int:
    from .convert import export_release

    export_release(args.model_dir, args.out_dir)
    print(f"exported {args.model_dir} -> {args.out_dir} (released xGen-MM layout)")
    return 0

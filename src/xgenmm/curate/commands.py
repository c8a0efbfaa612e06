"""`xgenmm curate ocr|grounding|kale --input SOURCE --output DIR [options]`."""

from __future__ import annotations

import argparse
import json

from .tasks import GroundingTaskConfig, KaleTaskConfig, OCRTaskConfig


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", action="append", required=True, metavar="SOURCE",
                   help="WebDataset .tar shards, .parquet files with image bytes, or an image folder "
                        "(alt-text in NAME.txt beside NAME.jpg); a file, folder, glob or {a..b} pattern; repeatable")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (reruns skip finished shards)")
    p.add_argument("--workers", type=int, default=0,
                   help="local worker processes (0: one per core; 1: in process); with --ray, the most shards "
                        "at once (0: as many as the cluster has CPUs for)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the shards as a Ray Data pipeline on a Ray cluster ('local', 'auto' or ray://HOST:PORT; "
                        "needs pip install 'xgenmm[curate]')")
    p.add_argument("--limit", type=int, default=None, help="at most N samples per shard (trial runs)")
    p.add_argument("--images-per-shard", type=int, default=1000, help="image folders: images per shard")
    p.add_argument("--image-column", default=None, help="Parquet: the image-bytes column (default: detected)")
    p.add_argument("--text-column", default=None, help="Parquet: the alt-text column (default: detected)")
    p.add_argument("--no-parquet", action="store_true", help="do not write OUT/parquet")
    p.add_argument("--no-webdataset", action="store_true", help="do not write OUT/wds caption shards")


def register(subparsers) -> None:
    curate = subparsers.add_parser("curate", help="build BLIP3-OCR / GROUNDING / KALE-style caption data from images")
    sub = curate.add_subparsers(dest="curate_task", metavar="TASK", required=True)

    ocr = sub.add_parser("ocr", help="OCR captions at granularity 0-5 (BLIP3-OCR-200M)")
    _common(ocr)
    d = OCRTaskConfig()
    ocr.add_argument("--engine", default=d.engine, help="tesseract | paddleocr")
    ocr.add_argument("--lang", default=None, help="engine language (tesseract: eng, deu, ...; paddleocr: en, ch, ...)")
    ocr.add_argument("--min-confidence", type=float, default=d.min_confidence)
    ocr.add_argument("--min-text-height", type=float, default=d.min_text_height, help="fraction of the image height")
    ocr.add_argument("--min-chars", type=int, default=d.min_chars)
    ocr.add_argument("--max-lines", type=int, default=d.max_lines)
    ocr.add_argument("--min-lines", type=int, default=d.min_lines)
    ocr.add_argument("--txt-granularity", default="random", help="level in the shards' txt: 0-5 or random")
    ocr.set_defaults(func=_run_ocr)

    gr = sub.add_parser("grounding", help="grounded captions in three forms (BLIP3-GROUNDING-50M)")
    _common(gr)
    g = GroundingTaskConfig()
    gr.add_argument("--detector", default=g.detector,
                    help="zero-shot detection checkpoint (OWL-ViT, OWLv2, Grounding DINO; folder or cached id), "
                         "or 'known' for boxes in the samples' json (objects: [{name, box}])")
    gr.add_argument("--device", default=g.device)
    gr.add_argument("--query-template", default=g.query_template, help='text query per name, e.g. "a photo of a {}"')
    gr.add_argument("--max-names", type=int, default=g.max_names)
    gr.add_argument("--score-threshold", type=float, default=g.score_threshold)
    gr.add_argument("--iou-threshold", type=float, default=g.iou_threshold)
    gr.add_argument("--max-per-name", type=int, default=g.max_per_name)
    gr.add_argument("--max-objects", type=int, default=g.max_objects)
    gr.add_argument("--txt-form", default=g.txt_form, choices=["bbox", "extent", "position", "random"])
    gr.set_defaults(func=_run_grounding)

    ka = sub.add_parser("kale", help="knowledge-augmented dense captions, stage 1 (BLIP3-KALE)")
    _common(ka)
    k = KaleTaskConfig()
    ka.add_argument("--captioner", required=True, help="dense captioner: xgenmm or transformers image-to-text checkpoint")
    ka.add_argument("--llm", required=True, help="fusing LLM: transformers causal-LM checkpoint")
    ka.add_argument("--captioner-prompt", default=None, help="prompt for captioners that take one")
    ka.add_argument("--prompt-file", default=None, help="fusion prompt template with {dense} and {alt}")
    ka.add_argument("--caption-tokens", type=int, default=k.caption_tokens)
    ka.add_argument("--fusion-tokens", type=int, default=k.fusion_tokens)
    ka.add_argument("--batch-size", type=int, default=k.batch_size)
    ka.add_argument("--device", default=k.device)
    ka.add_argument("--on-missing-alt", default=k.on_missing_alt, choices=["dense", "skip"])
    ka.set_defaults(func=_run_kale)


def _granularity(value: str) -> str | int:
    if value == "random":
        return value
    if value not in {str(i) for i in range(6)}:
        raise ValueError(f"--txt-granularity must be 0-5 or random, got {value!r}")
    return int(value)


def _run_ocr(args) -> int:
    cfg = OCRTaskConfig(args.engine, args.lang, args.min_confidence, args.min_text_height, args.min_chars,
                        args.max_lines, args.min_lines, _granularity(args.txt_granularity))
    return _run(cfg, args)


def _run_grounding(args) -> int:
    cfg = GroundingTaskConfig(args.detector, args.device, args.query_template, args.max_names, args.score_threshold,
                              args.iou_threshold, args.max_per_name, args.max_objects, txt_form=args.txt_form)
    return _run(cfg, args)


def _run_kale(args) -> int:
    cfg = KaleTaskConfig(args.captioner, args.llm, args.captioner_prompt, args.prompt_file, args.caption_tokens,
                         args.fusion_tokens, args.batch_size, args.device, args.on_missing_alt)
    return _run(cfg, args)


def _run(cfg, args) -> int:
    from .runner import RunConfig, run
    from .sources import SourceOptions

    run_cfg = RunConfig(args.output, args.workers, args.ray, limit=args.limit,
                        write_parquet=not args.no_parquet, write_webdataset=not args.no_webdataset)
    source = SourceOptions(args.images_per_shard, args.image_column, args.text_column)
    summary = run(cfg, args.input, run_cfg, source)
    print(json.dumps(summary, indent=2))
    return 1 if summary["shards"]["failed"] else 0

"""Curation: BLIP3-OCR, BLIP3-GROUNDING and KALE-style caption data sets from raw images.

    sources.py            inputs split into shards (WebDataset, Parquet, image folders)
    ocr.py                OCR engines (Tesseract default, PaddleOCR) and line filters
    ocr_captions.py       captions at granularity 0-5, OCR metadata
    grounding.py          taggers (alt-text noun phrases) and detectors (transformers zero-shot)
    grounding_captions.py grounded captions in the three released forms
    kale.py               dense captioners and the LLM fusion of KALE stage 1
    tasks.py              the three tasks: configs, per-batch processing, output schemas
    runner.py             per-shard work, process pool or Ray, atomic outputs
    manifest.py           done-manifest and run summary
    commands.py           `xgenmm curate ocr|grounding|kale`
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .runner import RunConfig, process_shard, run
    from .sources import ShardSpec, SourceOptions, list_shards, read_shard
    from .tasks import GroundingTaskConfig, KaleTaskConfig, OCRTaskConfig

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["RunConfig", "process_shard", "run"], ".runner"),
    **dict.fromkeys(["ShardSpec", "SourceOptions", "list_shards", "read_shard"], ".sources"),
    **dict.fromkeys(["GroundingTaskConfig", "KaleTaskConfig", "OCRTaskConfig"], ".tasks"),
})

__all__ = ["GroundingTaskConfig", "KaleTaskConfig", "OCRTaskConfig", "RunConfig", "ShardSpec", "SourceOptions",
           "list_shards", "process_shard", "read_shard", "run"]

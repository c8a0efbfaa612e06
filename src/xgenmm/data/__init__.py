"""Data: sample kinds, sources (WebDataset shards, JSON/JSONL, Parquet, mixtures), encoding
with labels and the length policy, padding and packing, and the resumable loader
(reference sections 4, 7 and 8).

    raw record (sources, shards, mixture) -> typed sample (parse, samples)
      -> Encoded (encode: processor images + tokenizer, labels, length policy)
      -> batch (collate: pad / pack / DPO pairs) -> ResumableLoader (loader)
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .collate import BatchConfig, Batcher, pack_batch, pad_batch, pair_batch
    from .encode import EncodeConfig, Encoded, EncodedPair, Encoder
    from .errors import SampleError, SkipStats
    from .loader import DataPipeline, LoaderConfig, ResumableLoader, build_loader
    from .mixture import MixtureConfig, Stream, load_mixture
    from .parse import SamplePolicy, parse_record
    from .samples import CaptionSample, Conversation, ImageRef, InterleavedSample, PreferenceSample, Turn
    from .sources import SourceConfig, open_source

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["BatchConfig", "Batcher", "pack_batch", "pad_batch", "pair_batch"], ".collate"),
    **dict.fromkeys(["EncodeConfig", "Encoded", "EncodedPair", "Encoder"], ".encode"),
    **dict.fromkeys(["SampleError", "SkipStats"], ".errors"),
    **dict.fromkeys(["DataPipeline", "LoaderConfig", "ResumableLoader", "build_loader"], ".loader"),
    **dict.fromkeys(["MixtureConfig", "Stream", "load_mixture"], ".mixture"),
    **dict.fromkeys(["SamplePolicy", "parse_record"], ".parse"),
    **dict.fromkeys(["CaptionSample", "Conversation", "ImageRef", "InterleavedSample", "PreferenceSample", "Turn"], ".samples"),
    **dict.fromkeys(["SourceConfig", "open_source"], ".sources"),
})

__all__ = [
    "BatchConfig", "Batcher", "CaptionSample", "Conversation", "DataPipeline", "EncodeConfig", "Encoded", "EncodedPair",
    "Encoder", "ImageRef", "InterleavedSample", "LoaderConfig", "MixtureConfig", "PreferenceSample", "ResumableLoader",
    "SampleError", "SamplePolicy", "SkipStats", "SourceConfig", "Stream", "Turn", "build_loader", "load_mixture",
    "open_source", "pack_batch", "pad_batch", "pair_batch", "parse_record",
]

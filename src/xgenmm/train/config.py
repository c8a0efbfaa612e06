"""The training configuration: typed dataclasses loaded from YAML, `key.sub=value` overrides,
and validation before any compute (unknown keys, wrong types, bad values and missing paths are
all reported together, each under its dotted name).

One config describes one stage of the recipe (reference section 8); stages differ by config,
not by code path: `stage` picks the loss (next-token for pretrain / sft / safety, sigmoid DPO
for dpo) and the checks that go with it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.collate import BatchConfig
from ..data.encode import EncodeConfig
from ..data.parse import SamplePolicy
from .typed import ConfigError, apply_overrides, build_dataclass
from .typed import describe as _describe

STAGES = ("pretrain", "sft", "dpo", "safety")
NO_DECAY_KINDS = ("norm", "bias", "latents", "embedding", "lora")


@dataclass
class ModelSection:
    preset: str | None = None  # a fresh model of this named size (phi3-mini, small, tiny); or use `checkpoint`
    tokenizer: str | None = None  # with `preset`: the tokenizer directory (vocabulary sized to it); default: the preset's ids
    checkpoint: str | None = None  # a model directory to start from (the previous stage's RUN_DIR/final)
    image_mode: str | None = None  # override the image mode: squash (pretraining, fixed resolution), pad or anyres (SFT)
    preset_overrides: dict = field(default_factory=dict)  # with `preset`: config sections to change, e.g. {resampler: {depth: 2}}
    vision_init: str | None = None  # with `preset`: pretrained vision weights (a SigLIP dir or hub id), e.g. google/siglip-so400m-patch14-384
    lm_init: str | None = None  # with `preset`: pretrained LLM weights (a causal-LM dir or hub id), e.g. microsoft/Phi-3-mini-4k-instruct


@dataclass
class DataSection:
    source: str | list = ""  # a .json/.jsonl/.parquet file, WebDataset shards (brace pattern or list) or a mixture .yaml
    seed: int = 42  # stream seed (a mixture file's own seed wins)
    num_workers: int = 0  # DataLoader worker processes per rank (0: in the training process)
    cache_mb: int = 0  # keep encoded samples in memory across epochs, up to this many MiB (0: off; needs num_workers 0)
    encode: EncodeConfig = field(default_factory=EncodeConfig)  # length policy and image convention
    batch: BatchConfig = field(default_factory=BatchConfig)  # rows per micro-batch (per rank), packing, grouping
    policy: SamplePolicy = field(default_factory=SamplePolicy)  # what to do with imperfect samples


@dataclass
class TrainableSection:
    vision_encoder: bool = False  # the SigLIP tower; frozen in every stage of the recipe
    vision_tokenizer: bool = True  # the Perceiver resampler (latents, layers, projection)
    lang_model: bool = True  # the whole LLM (embeddings, layers, head); false with LoRA: only adapters train


@dataclass
class LoraSection:
    enabled: bool = False  # add LoRA adapters (peft) to the LLM; required by the dpo stage
    r: int = 8  # adapter rank
    alpha: float = 16.0  # scaling numerator (scale = alpha / r)
    dropout: float = 0.05  # dropout on the adapter input
    target_modules: list = field(default_factory=lambda: ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])  # LLM linears
    merge_at_end: bool = True  # write RUN_DIR/final as a plain model with the adapters merged in


@dataclass
class OptimSection:
    lr: float = 2e-5  # peak learning rate (release SFT: 2e-5)
    weight_decay: float = 0.0  # AdamW decoupled weight decay (release SFT: 0)
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    no_decay: list = field(default_factory=lambda: ["norm", "bias", "latents", "embedding", "lora"])  # exempt kinds
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    grad_accum: int = 1  # micro-batches per optimiser step (per rank)
    lr_scale: dict = field(default_factory=dict)  # module prefix -> lr multiplier, e.g. {vision_tokenizer: 0.1}
    loss_weighting: str = "token"  # next-token loss: token (each supervised token weighs the same) or answer (each answer)


@dataclass
class ScheduleSection:
    max_steps: int = 100  # optimiser steps of the stage (the cosine ends here)
    warmup_steps: int = 0  # linear warmup from lr/warmup_steps to lr (release SFT: 2000)
    kind: str = "cosine"  # cosine (to min_lr_ratio * lr at max_steps) or constant (after warmup)
    min_lr_ratio: float = 0.0  # final learning rate as a fraction of lr
    epochs: int | None = None  # also stop at the end of this many passes over the data (None: only max_steps)


@dataclass
class DPOSection:
    beta: float = 0.1  # strength of the KL anchor to the reference (the policy with adapters disabled)
    label_smoothing: float = 0.0  # conservative DPO: assumed rate of flipped preference labels
    sft_weight: float = 0.0  # weight of each chosen answer's NLL over its length, added to its pair's loss (RPO)
    # Held-out preference pairs: the final model is the evaluated step (0, every select_every
    # steps, the last) with the highest preference accuracy on them (train/select.py)
    select_source: str | None = None
    select_every: int = 5


@dataclass
class RuntimeSection:
    device: str = "auto"  # auto (cuda when present), cpu or cuda
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16
    strategy: str = "auto"  # auto (ddp when launched by torchrun with >1 process), single, ddp or fsdp
    fsdp_reshard_after_forward: bool = True  # FSDP2: free gathered layers after forward (ZeRO-3); false: ZeRO-2
    find_unused_parameters: bool = True  # DDP: needed when a batch has no images (the resampler gets no gradient)
    activation_checkpointing: bool = False  # recompute LLM layers and resampler attention in backward (non-reentrant)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    deterministic: bool = True  # torch deterministic algorithms (CPU runs are bitwise repeatable)
    image_token_cache: bool = False  # frozen vision encoder + resampler: each image's tokens computed once (needs data.cache_mb)


@dataclass
class CheckpointSection:
    every_steps: int = 500  # save a resumable checkpoint every this many steps (0: only at the end)
    keep_last: int = 3  # checkpoints kept in RUN_DIR/checkpoints (older ones are deleted)
    resume: str = "auto"  # auto: continue from the latest checkpoint in RUN_DIR if any; never; must (fail if none)
    save_final: bool = True  # write RUN_DIR/final (a from_pretrained directory with the processor files)


@dataclass
class LoggingSection:
    every_steps: int = 1  # metrics written every this many steps (JSONL always, TensorBoard if on)
    tensorboard: bool = True  # event files in RUN_DIR/tensorboard
    progress: bool = True  # tqdm bar on rank 0
    plot: bool = True  # RUN_DIR/curves.png (loss and learning rate) at the end
    peak_tflops: float = 0.0  # per-device peak for MFU (0: a table for known GPUs, an AVX2 estimate on CPU)


@dataclass
class TrainConfig:
    stage: str = "sft"  # pretrain, sft, dpo or safety
    run_dir: str = "runs/sft"  # checkpoints, metrics, curves, config.yaml and final/ go here
    seed: int = 0  # model init, dropout and every other random draw of the trainer
    nan_policy: str = "stop"  # on a NaN/inf loss or gradient: stop (save a checkpoint, then fail) or skip the step
    model: ModelSection = field(default_factory=ModelSection)  # where the weights come from
    data: DataSection = field(default_factory=DataSection)  # what the stage reads
    trainable: TrainableSection = field(default_factory=TrainableSection)  # which parts learn
    lora: LoraSection = field(default_factory=LoraSection)  # adapters on the LLM
    optim: OptimSection = field(default_factory=OptimSection)  # AdamW, clipping, accumulation
    schedule: ScheduleSection = field(default_factory=ScheduleSection)  # steps, warmup, cosine
    dpo: DPOSection = field(default_factory=DPOSection)  # dpo stage only
    runtime: RuntimeSection = field(default_factory=RuntimeSection)  # device, precision, distribution
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)  # saving and resuming
    logging: LoggingSection = field(default_factory=LoggingSection)  # what a researcher watches

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def uses_lora(self) -> bool:
        return self.lora.enabled


def config_from_dict(data: dict, source: str = "config", check_paths: bool = True,
                     base_dir: str | Path | None = None) -> TrainConfig:
    """Build and validate; raises ConfigError listing every problem (types first; once the
    types are right, values and paths together)."""
    if not isinstance(data, dict):
        raise ConfigError([f"expected a mapping at the top, got {type(data).__name__}"], source)
    problems: list[str] = []
    cfg = build_dataclass(TrainConfig, data, "", problems)
    if not problems:
        if base_dir is not None:
            _rebase(cfg, Path(base_dir))
        problems += validate(cfg, check_paths)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (), check_paths: bool = True,
                base_dir: str | Path | None = None) -> TrainConfig:
    """The config of a YAML file (or the defaults when `path` is None) with `key.sub=value`
    overrides applied, validated. Relative paths are taken from the current directory (as a
    user types them), unless `base_dir` is given."""
    data: dict = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError([f"not valid YAML ({e})"], source) from e
    data = apply_overrides(data, list(overrides))
    return config_from_dict(data, source, check_paths, base_dir)


def _rebase(cfg: TrainConfig, base: Path) -> None:
    def rel(p, hub_ok: bool = False):
        if p is None or p == "" or "://" in str(p) or Path(p).is_absolute():
            return p
        if hub_ok and _hub_id(p) and not (base / p).exists():
            return p  # a model named by its Hugging Face repo id ("org/name")
        return str(base / p)

    for name in ("tokenizer", "checkpoint", "vision_init", "lm_init"):
        setattr(cfg.model, name, rel(getattr(cfg.model, name), hub_ok=True))
    cfg.data.source = [rel(s) for s in cfg.data.source] if isinstance(cfg.data.source, list) else rel(cfg.data.source)
    cfg.dpo.select_source = rel(cfg.dpo.select_source)
    cfg.run_dir = rel(cfg.run_dir)


def _hub_id(p) -> bool:
    return str(p).count("/") == 1 and not str(p).startswith((".", "/"))


def _choice(problems: list[str], where: str, value, choices) -> None:
    if value not in choices:
        problems.append(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")


def lr_scale_problems(lr_scale: dict) -> list[str]:
    """optim.lr_scale: every multiplier a positive number."""
    return [f"optim.lr_scale.{k}: expected a positive number, got {v!r}" for k, v in lr_scale.items()
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0]


def validate(cfg: TrainConfig, check_paths: bool = True) -> list[str]:
    """Value and cross-field checks (types are checked while building)."""
    p: list[str] = []
    _choice(p, "stage", cfg.stage, STAGES)
    _choice(p, "nan_policy", cfg.nan_policy, ("stop", "skip"))
    m = cfg.model
    if bool(m.preset) == bool(m.checkpoint):
        p.append("model: give exactly one of model.preset (a fresh model) or model.checkpoint (a model directory)")
    if m.preset:
        from ..model.presets import PRESETS

        _choice(p, "model.preset", m.preset, sorted(PRESETS))
    for name in ("tokenizer", "vision_init", "lm_init"):
        if getattr(m, name) and not m.preset:
            p.append(f"model.{name}: only with model.preset (a checkpoint carries its own)")
    if m.image_mode is not None:
        _choice(p, "model.image_mode", m.image_mode, ("squash", "pad", "anyres"))
    if not cfg.data.source:
        p.append("data.source: required (a data file, shards or a mixture .yaml)")
    if cfg.data.num_workers < 0:
        p.append("data.num_workers: must be >= 0")
    if cfg.data.cache_mb < 0:
        p.append("data.cache_mb: must be >= 0")
    elif cfg.data.cache_mb and cfg.data.num_workers:
        p.append("data.cache_mb: the encoded-sample cache lives in the training process; it needs data.num_workers: 0 "
                 "(each worker process would keep its own copy and lose it at every epoch)")
    if cfg.runtime.image_token_cache:
        if not cfg.data.cache_mb:
            p.append("runtime.image_token_cache: needs data.cache_mb > 0 (it keeps tokens per image tensor, and only "
                     "the encoded-sample cache hands the same tensors back in later epochs)")
        if cfg.trainable.vision_encoder or cfg.trainable.vision_tokenizer:
            p.append("runtime.image_token_cache: needs trainable.vision_encoder and trainable.vision_tokenizer false "
                     "(cached tokens would go stale as those weights train)")
    _choice(p, "data.encode.truncation", cfg.data.encode.truncation, ("truncate", "drop"))
    _choice(p, "data.encode.convention", cfg.data.encode.convention, ("auto", "instruct", "base"))
    if cfg.data.batch.batch_size < 1:
        p.append("data.batch.batch_size: must be >= 1")
    if cfg.stage == "dpo" and cfg.data.batch.packing:
        p.append("data.batch.packing: not available for dpo (pairs are kept together in padded rows)")
    if cfg.lora.enabled and cfg.trainable.lang_model:
        p.append("trainable.lang_model: must be false with lora.enabled (LoRA trains adapters on the frozen LLM)")
    if cfg.stage == "dpo" and not cfg.lora.enabled:
        p.append("lora.enabled: the dpo stage needs LoRA (its reference model is the policy with the adapters disabled)")
    if cfg.lora.enabled:
        if cfg.lora.r < 1:
            p.append("lora.r: must be >= 1")
        if not cfg.lora.target_modules:
            p.append("lora.target_modules: name at least one LLM module (e.g. qkv_proj)")
        if not 0 <= cfg.lora.dropout < 1:
            p.append("lora.dropout: must be in [0, 1)")
        if not cfg.lora.alpha > 0:  # `not >` also refuses NaN, as every check below
            p.append("lora.alpha: must be > 0 (the adapters' update is scaled by alpha / r; 0 trains nothing)")
    if not (cfg.trainable.vision_encoder or cfg.trainable.vision_tokenizer or cfg.trainable.lang_model or cfg.lora.enabled):
        p.append("trainable: nothing would train (enable a part or lora)")
    o = cfg.optim
    if not o.lr > 0:
        p.append("optim.lr: must be > 0")
    if not o.eps > 0:
        p.append("optim.eps: must be > 0")
    if not o.weight_decay >= 0:
        p.append("optim.weight_decay: must be >= 0")
    if len(o.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas):
        p.append(f"optim.betas: expected two numbers in [0, 1), got {o.betas!r}")
    for k in o.no_decay:
        if k not in NO_DECAY_KINDS:
            p.append(f"optim.no_decay: {k!r} is not one of {', '.join(NO_DECAY_KINDS)}")
    p.extend(lr_scale_problems(o.lr_scale))
    if not cfg.dpo.sft_weight >= 0:
        p.append("dpo.sft_weight: must be >= 0")
    if not o.grad_clip >= 0:
        p.append("optim.grad_clip: must be >= 0 (0: no clipping)")
    if o.grad_accum < 1:
        p.append("optim.grad_accum: must be >= 1")
    s = cfg.schedule
    if s.max_steps < 1:
        p.append("schedule.max_steps: must be >= 1")
    if s.warmup_steps < 0:
        p.append("schedule.warmup_steps: must be >= 0")
    _choice(p, "schedule.kind", s.kind, ("cosine", "constant"))
    if not 0 <= s.min_lr_ratio <= 1:
        p.append("schedule.min_lr_ratio: must be in [0, 1]")
    if s.epochs is not None and s.epochs < 1:
        p.append("schedule.epochs: must be >= 1 or null")
    _choice(p, "optim.loss_weighting", cfg.optim.loss_weighting, ("token", "answer"))
    if not cfg.dpo.beta > 0:
        p.append("dpo.beta: must be > 0")
    if not 0 <= cfg.dpo.label_smoothing < 0.5:
        p.append("dpo.label_smoothing: must be in [0, 0.5)")
    if cfg.dpo.select_source:
        if cfg.stage != "dpo":
            p.append("dpo.select_source: only for the dpo stage (it chooses the step by preference accuracy)")
        if cfg.dpo.select_every < 1:
            p.append("dpo.select_every: must be >= 1")
        if cfg.runtime.strategy == "fsdp":
            p.append("dpo.select_source: not available with runtime.strategy fsdp (it keeps the best step's "
                     "trainable weights whole on every rank); use single or ddp")
        if not cfg.checkpoint.save_final or (cfg.lora.enabled and not cfg.lora.merge_at_end):
            p.append("dpo.select_source: the chosen step's weights are written as RUN_DIR/final only (a checkpoint "
                     "holds its own step's); needs checkpoint.save_final and lora.merge_at_end true")
    r = cfg.runtime
    _choice(p, "runtime.device", r.device, ("auto", "cpu", "cuda"))
    _choice(p, "runtime.precision", r.precision, ("auto", "fp32", "bf16"))
    _choice(p, "runtime.strategy", r.strategy, ("auto", "single", "ddp", "fsdp"))
    if r.threads < 0:
        p.append("runtime.threads: must be >= 0")
    c = cfg.checkpoint
    if c.every_steps < 0:
        p.append("checkpoint.every_steps: must be >= 0")
    if c.keep_last < 1:
        p.append("checkpoint.keep_last: must be >= 1")
    _choice(p, "checkpoint.resume", c.resume, ("auto", "never", "must"))
    if cfg.logging.every_steps < 1:
        p.append("logging.every_steps: must be >= 1")
    if cfg.logging.peak_tflops < 0:
        p.append("logging.peak_tflops: must be >= 0")
    if check_paths:
        p += missing_paths(cfg)
    return p


def missing_paths(cfg: TrainConfig) -> list[str]:
    out = []
    if cfg.model.tokenizer and not Path(cfg.model.tokenizer).is_dir():
        out.append(f"model.tokenizer: {cfg.model.tokenizer}: no such directory")
    for name in ("checkpoint", "vision_init", "lm_init"):
        ck = getattr(cfg.model, name)
        # A hub id (owner/name) is looked up when the model is built (HF cache or download).
        if ck and not Path(ck).is_dir() and not _hub_id(ck):
            out.append(f"model.{name}: {ck}: no such model directory")
        elif ck and Path(ck).is_dir() and not (Path(ck) / "config.json").is_file():
            out.append(f"model.{name}: {ck}: not a model directory (no config.json)")
    if cfg.dpo.select_source and not os.path.exists(cfg.dpo.select_source):
        out.append(f"dpo.select_source: {cfg.dpo.select_source}: no such file")
    for src in cfg.data.source if isinstance(cfg.data.source, list) else [cfg.data.source]:
        s = str(src)
        if not s or "://" in s or s.startswith("pipe:"):
            continue
        if "{" in s:  # a brace pattern: check its first shard
            import braceexpand

            s = next(iter(braceexpand.braceexpand(s)))
        if not os.path.exists(s):
            out.append(f"data.source: {src}: no such file")
    return out


def describe() -> str:
    """Every field of TrainConfig with its default and comment (`xgenmm train describe`)."""
    return _describe(TrainConfig)

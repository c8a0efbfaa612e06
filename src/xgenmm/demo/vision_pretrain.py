"""Vision-tower pretraining on the world's captions with the SigLIP sigmoid loss: the stage
only the tiny default needs (the release starts from a pretrained SigLIP, which cannot be
downloaded here).

A transformers `SiglipModel` is built from config: its vision tower is exactly the XGenMM
model's (`vision.hf_config`), its text tower a small one on the world's tokenizer. Each
caption-shard image is paired with the clauses of its caption that name one thing and its
cell ("a large red circle at the top-left", 'the word "cat" at the center'), and with hard
negatives: the same clause with one attribute changed (colour, shape, size, cell, word).

The loss is SigLIP's pairwise sigmoid loss, with one change: a batch's label matrix is the
truth table (clause j is true of image i), not the identity, because clauses repeat across
scenes. With one clause per image and distinct clauses it is `SiglipModel(return_loss=True)`'s
loss exactly. A clause pins one cell's content, so the only way to score well is for the
patch tokens over each cell to encode that cell's colour, shape, size and word: what every
question kind of the world asks about.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import SiglipConfig, SiglipModel

log = logging.getLogger("xgenmm.demo")


@dataclass
class VisionPretrainConfig:
    max_steps: int = 3000  # optimiser steps (the budget: same steps, same tower, whatever the machine's load)
    seconds: float | None = None  # optional wall-clock cap (a capped run depends on the machine's speed)
    batch_images: int = 32  # images per batch
    negatives_per_image: int = 4  # hard-negative clauses drawn per image
    lr: float = 5e-3  # AdamW peak learning rate (short linear warmup, then constant)
    warmup_steps: int = 30  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay
    text_hidden: int = 64  # text tower width
    text_layers: int = 1  # text tower depth (clauses are short; one layer suffices)
    temperature: float | None = 20.0  # fixed logit scale (None: learned, SigLIP's default init 10)
    max_text_tokens: int = 12  # clauses are padded to this length (the text tower pools the last position)
    seed: int = 0  # init and sampling seed
    threads: int = 0  # torch intra-op threads (0: leave as is)


# ---- clauses: what a caption says about one cell --------------------------------------------

Fact = tuple  # ("obj", kind, colour, size, position) or ("word", text, position)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def fact_text(f: Fact) -> str:
    """The caption clause of a fact, worded as the world's plain captions word it (without
    "at the ..." for a tile's fact, whose position is None)."""
    where = "" if f[-1] is None else f" at the {f[-1]}"
    if f[0] == "obj":
        _, kind, colour, size, _ = f
        return f"{_article(size)} {size} {colour} {kind}{where}"
    return f'the word "{f[1]}"{where}'


def scene_facts(scene: dict) -> set[Fact]:
    """The facts of a scene dict (as stored in the caption shards' json member)."""
    facts = {("obj", o["kind"], o["colour"], o["size"], o["position"]) for o in scene["objects"]}
    facts |= {("word", w["text"], w["position"]) for w in scene["words"]}
    return facts


def cell_facts(scene: dict, num_cells: int) -> list[set[Fact]]:
    """The facts of each cell of a scene dict, in reading order, without positions: what a
    tile of the cell shows."""
    cells: list[set[Fact]] = [set() for _ in range(num_cells)]
    for o in scene["objects"]:
        cells[o["cell"]].add(("obj", o["kind"], o["colour"], o["size"], None))
    for w in scene["words"]:
        cells[w["cell"]].add(("word", w["text"], None))
    return cells


def hard_negative(f: Fact, world: dict, rng: random.Random) -> Fact:
    """`f` with one attribute changed to another value of the world."""
    cells = world["cell_names"]
    if f[0] == "obj":
        _, kind, colour, size, pos = f
        choices = ["colour", "kind"] + (["position"] if pos is not None else []) + (["size"] if len(world["sizes"]) > 1 else [])
        what = rng.choice(choices)
        if what == "colour":
            colour = rng.choice([c for c in world["colours"] if c != colour])
        elif what == "kind":
            kind = rng.choice([k for k in world["shapes"] if k != kind])
        elif what == "size":
            size = rng.choice([s for s in world["sizes"] if s != size])
        else:
            pos = rng.choice([c for c in cells if c != pos])
        return ("obj", kind, colour, size, pos)
    _, text, pos = f
    if (pos is None or rng.random() < 0.5) and len(world["words"]) > 1:
        return ("word", rng.choice([w for w in world["words"] if w != text]), pos)
    return ("word", text, rng.choice([c for c in cells if c != pos]))


def random_fact(world: dict, rng: random.Random, positions: bool = True) -> Fact:
    pos = rng.choice(world["cell_names"]) if positions else None
    if rng.random() < 0.2:
        return ("word", rng.choice(world["words"]), pos)
    return ("obj", rng.choice(world["shapes"]), rng.choice(world["colours"]), rng.choice(world["sizes"]), pos)


# ---- the model -------------------------------------------------------------------------------

def build_siglip(vision_hf_config: dict, tokenizer, cfg: VisionPretrainConfig) -> SiglipModel:
    """A SigLIP dual encoder whose vision tower has exactly `vision_hf_config`."""
    width = vision_hf_config["hidden_size"]
    text = dict(vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
                num_hidden_layers=cfg.text_layers, num_attention_heads=max(1, cfg.text_hidden // 32),
                max_position_embeddings=cfg.max_text_tokens, projection_size=width,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(cfg.seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=dict(vision_hf_config)))
    if cfg.temperature is not None:
        # With tens of images per batch (not SigLIP's thousands) a learned temperature shrinks
        # while the embeddings are still uninformative, which starves them of gradient: the
        # towers collapse to one embedding. A fixed temperature keeps the pressure on.
        model.logit_scale.data.fill_(math.log(cfg.temperature))
        model.logit_scale.requires_grad_(False)
    return model


def sigmoid_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss with a label matrix: -sum_ij log sigmoid(z_ij * logit_ij) / n_images,
    z = +1 for true pairs, -1 otherwise (the big_vision / transformers normalisation)."""
    z = 2.0 * labels - 1.0
    return -F.logsigmoid(z * logits).sum() / logits.shape[0]


def encode_texts(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """Right-padded to a fixed length, as SigLIP's text tower is trained (it pools the last
    position, so every clause must end at the same place relative to its padding)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id
    too_long = [t for t, i in zip(texts, ids) if len(i) > length]
    if too_long:
        raise ValueError(f"vision pretraining: clause {too_long[0]!r} has more than max_text_tokens={length} tokens")
    return torch.tensor([i + [pad] * (length - len(i)) for i in ids], dtype=torch.long)


@dataclass
class VisionPretrainResult:
    model: SiglipModel  # the trained dual encoder
    losses: list = field(default_factory=list)  # per-step loss
    steps: int = 0  # optimiser steps taken
    seconds: float = 0.0  # wall time of the training loop
    pair_accuracy: float = 0.0  # held-out: share of (image, clause) pairs classified right (sign of the logit)
    hard_negative_accuracy: float = 0.0  # held-out: true clause scored above its hard negative


def _batch(items: list, world: dict, cfg: VisionPretrainConfig, rng: random.Random, tokenizer):
    pixels = torch.stack([p for p, _ in items])
    facts: dict[Fact, None] = {}
    positions = any(f[-1] is not None for _, fs in items for f in fs)  # whole scenes, not tiles
    for _, fs in items:
        for f in fs:
            facts.setdefault(f, None)
            for _ in range(max(1, cfg.negatives_per_image // max(1, len(fs)))):
                facts.setdefault(hard_negative(f, world, rng), None)
        if not fs:  # an empty tile (or scene): some clause must be false of it
            facts.setdefault(random_fact(world, rng, positions), None)
    order = list(facts)
    labels = torch.tensor([[float(f in fs) for f in order] for _, fs in items])
    return pixels, encode_texts(tokenizer, [fact_text(f) for f in order], cfg.max_text_tokens), labels


def _on(model: SiglipModel, tensors: tuple) -> tuple:
    device = next(model.parameters()).device
    return tuple(t.to(device) for t in tensors)


def pretrain_vision(model: SiglipModel, train: list, held_out: list, world: dict, tokenizer,
                    cfg: VisionPretrainConfig, progress: bool = True, on_step=None,
                    device: str | torch.device = "cpu") -> VisionPretrainResult:
    """Train `model` on `train` = [(pixel tensor [3, S, S], set of facts)] for the budget of
    `cfg` on `device` (the model is moved there); measure on `held_out`. `on_step(step, loss)`
    is called after each step."""
    if not train:
        raise ValueError("vision pretraining: no training images")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = random.Random(f"vision-pretrain/{cfg.seed}")
    model.to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    model.train()
    losses, start, step = [], time.perf_counter(), 0
    bar = tqdm(total=cfg.max_steps, desc="vision pretraining (sigmoid loss)", unit="step", disable=not progress,
               dynamic_ncols=True)
    order: list[int] = []
    while step < cfg.max_steps and (cfg.seconds is None or time.perf_counter() - start < cfg.seconds):
        if len(order) < cfg.batch_images:
            more = list(range(len(train)))
            rng.shuffle(more)
            order += more
        items = [train[i] for i in order[: cfg.batch_images]]
        del order[: cfg.batch_images]
        pixels, ids, labels = _on(model, _batch(items, world, cfg, rng, tokenizer))
        out = model(input_ids=ids, pixel_values=pixels)
        loss = sigmoid_loss(out.logits_per_image, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(step, losses[-1])
    bar.close()
    seconds = time.perf_counter() - start
    pair_acc, hard_acc = measure(model, held_out, world, tokenizer, cfg)
    return VisionPretrainResult(model, losses, step, seconds, pair_acc, hard_acc)


@torch.no_grad()
def measure(model: SiglipModel, held_out: list, world: dict, tokenizer, cfg: VisionPretrainConfig) -> tuple[float, float]:
    """(pair accuracy over true clauses and hard negatives, share of true clauses scored above
    a hard negative of themselves) on held-out images."""
    if not held_out:
        return math.nan, math.nan
    was = model.training
    model.eval()
    rng = random.Random(f"vision-measure/{cfg.seed}")
    right = total = wins = duels = 0
    for b in range(0, len(held_out), cfg.batch_images):
        items = held_out[b : b + cfg.batch_images]
        pixels, ids, labels = _on(model, _batch(items, world, cfg, rng, tokenizer))
        logits = model(input_ids=ids, pixel_values=pixels).logits_per_image
        right += int(((logits > 0).float() == labels).sum())
        total += labels.numel()
        # Each image's true clauses against the negatives of the batch that are false for it.
        for i in range(len(items)):
            pos, neg = logits[i][labels[i] > 0], logits[i][labels[i] == 0]
            if len(pos) and len(neg):
                wins += int((pos[:, None] > neg[None, :]).sum())
                duels += pos.numel() * neg.numel()
    model.train(was)
    return right / max(total, 1), wins / max(duels, 1)


def copy_vision_tower(siglip: SiglipModel, xgenmm_model) -> None:
    """Copy the trained vision tower into XGenMM's `vision_encoder.tower` (same config, same
    tensor names) and freeze it, as the recipe keeps it frozen in every stage."""
    state = siglip.vision_model.state_dict()
    xgenmm_model.vision_encoder.tower.load_state_dict(state, strict=True)
    xgenmm_model.vision_encoder.cfg.frozen = True
    xgenmm_model.vision_encoder.tower.requires_grad_(False)

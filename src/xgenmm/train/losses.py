"""The two losses of the recipe. Both return a *sum* over their units (supervised tokens for
next-token prediction, pairs for DPO) so that the trainer can divide by the count over the
whole optimiser step (all micro-batches, all ranks): the gradient is then the same however
the global batch is split."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_sizes", "labels", "segment_ids")


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def supervised_count(batch: dict) -> int:
    """Tokens the next-token loss averages over: labels that are some earlier token's target
    (the first position of a row is never one)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def answer_spans(labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """For each supervised target (row-major over `labels[:, 1:]`, the order in which the model
    returns its token losses), the index of its answer: a maximal run of supervised targets
    in a row. Returns (span index per target, number of answers)."""
    keep = labels[:, 1:] != IGNORE_INDEX
    starts = keep & ~F.pad(keep[:, :-1], (1, 0), value=False)
    ids = starts.flatten().cumsum(0).view_as(keep)[keep] - 1
    return ids, int(starts.sum())


def units(batch: dict, stage: str, weighting: str = "token") -> int:
    if stage == "dpo":
        return int(batch["num_pairs"])
    return answer_spans(batch["labels"])[1] if weighting == "answer" else supervised_count(batch)


@dataclass
class LossOut:
    loss_sum: torch.Tensor  # differentiable sum over units
    units: int  # supervised tokens, or pairs
    fused_mask: torch.Tensor  # [B, L'] attention mask of the fused sequence (tokens / padding stats)
    metrics: dict  # extra sums (DPO: accuracy, margins, rewards) over the units


def lm_loss(model, batch: dict, weighting: str = "token") -> LossOut:
    """Next-token loss summed over tokens (`weighting="token"`), or over answers, each the mean
    of its tokens (`"answer"`)."""
    by_answer = weighting == "answer"
    out = model(**model_inputs(batch), return_logits=False, return_token_losses=by_answer)
    n = out.num_supervised
    if n != supervised_count(batch):
        raise RuntimeError(f"model supervised {n} tokens, the batch labels {supervised_count(batch)} "
                           f"(samples {batch.get('sample_ids')})")
    if not by_answer:
        return LossOut(out.loss * n, n, out.attention_mask, {})
    ids, spans = answer_spans(batch["labels"])
    ids = ids.to(out.token_losses.device)
    lengths = torch.bincount(ids, minlength=spans).to(out.token_losses.dtype)
    return LossOut((out.token_losses / lengths[ids]).sum(), spans, out.attention_mask, {})


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the sum of log-probabilities of the supervised (answer) tokens, and the fused
    attention mask. The LM runs without padding and its head only at the supervised positions."""
    out = model(**model_inputs(batch), return_logits=False, return_row_logps=True)
    return out.row_logps, out.attention_mask


def dpo_loss(model, batch: dict, beta: float, label_smoothing: float = 0.0, reference_context=None,
             reference_model=None, sft_weight: float = 0.0) -> LossOut:
    """Sigmoid DPO (Rafailov et al.) over pairs in rows (chosen_0, rejected_0, chosen_1, ...).
    The reference log-probs come from the same model inside `reference_context` (the LoRA
    adapters disabled): one set of weights in memory. `reference_model` is the module to call
    for it (DDP's inner module: no gradient-sync bookkeeping for a no-grad pass).

    `sft_weight` > 0 adds that weight times the chosen answer's negative log-likelihood over
    its length to each pair's loss (RPO, Pang et al. 2024, as the paper writes it; TRL's
    `rpo_alpha` averages the NLL over all chosen tokens of the batch instead, the same only
    when the answers are equally long): pure DPO only asks chosen to beat rejected, and can
    lower both, down to the answer's end token."""
    policy, mask = sequence_logps(model, batch)
    with torch.no_grad(), (reference_context() if reference_context else nullcontext()):
        reference, _ = sequence_logps(reference_model if reference_model is not None else model, batch)
    pc, pr = policy[0::2], policy[1::2]
    rc, rr = reference[0::2], reference[1::2]
    chosen_reward = beta * (pc - rc).detach()
    rejected_reward = beta * (pr - rr).detach()
    logits = beta * ((pc - rc) - (pr - rr))
    losses = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    if sft_weight:
        tokens = (batch["labels"][0::2] != IGNORE_INDEX).sum(1).clamp(min=1).to(device=pc.device, dtype=pc.dtype)
        losses = losses + sft_weight * (-pc / tokens)
    margin = chosen_reward - rejected_reward
    metrics = {
        "dpo/accuracy": float((margin > 0).float().sum()),
        "dpo/margin": float(margin.sum()),
        "dpo/reward_chosen": float(chosen_reward.sum()),
        "dpo/reward_rejected": float(rejected_reward.sum()),
        "dpo/logp_chosen": float(pc.detach().sum()),
        "dpo/logp_rejected": float(pr.detach().sum()),
    }
    return LossOut(losses.sum(), int(pc.shape[0]), mask, metrics)

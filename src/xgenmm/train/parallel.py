"""Distribution applied to the model from outside (torchtitan style): process group setup from
the torchrun environment, DDP or FSDP2 (`fully_shard` per LLM layer, the resampler, then the
root) with a mixed-precision policy, activation checkpointing by module type, and the few
collectives the trainer needs. The model itself knows nothing of any of this."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .config import RuntimeSection

log = logging.getLogger("xgenmm.train")


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    strategy: str = "single"  # single, ddp or fsdp
    initialised_here: bool = False  # this module created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(rt: RuntimeSection) -> Dist:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (torchrun), pick the device and initialise the
    process group (nccl on GPUs, gloo on CPU) when there is more than one process, or a group
    of one for FSDP2 in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = rt.device == "cuda" or (rt.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    strategy = rt.strategy
    if strategy == "auto":
        strategy = "ddp" if world > 1 else "single"
    if world > 1 and strategy == "single":
        raise ValueError("runtime.strategy: single, but launched with several processes; use ddp or fsdp")
    mine = False
    backend = "nccl" if use_cuda else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
        mine = True
    elif strategy == "fsdp" and not dist.is_initialized():
        # fully_shard needs a process group even for one process (one GPU, or a first try of
        # the sharded path on one machine): a group of one over an in-process store.
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        mine = True
    if rt.threads:
        torch.set_num_threads(rt.threads)
    return Dist(rank, world, local, device, strategy, mine)


def teardown(d: Dist) -> None:
    if d.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def autocast_dtype(rt: RuntimeSection, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU (the release's), none (fp32) on CPU unless asked."""
    if rt.precision == "fp32":
        return None
    if rt.precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" else None


def autocast(dtype: torch.dtype | None, device: torch.device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _lm_layers(model) -> nn.ModuleList:
    return model.lang_model.get_decoder().layers


def apply_activation_checkpointing(model) -> None:
    """Recompute each LLM decoder layer and each resampler attention in backward."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl, apply_activation_checkpointing as apply, checkpoint_wrapper)

    from ..model.resampler import PerceiverAttention

    layer_type = type(_lm_layers(model)[0])
    apply(model, checkpoint_wrapper_fn=lambda m: checkpoint_wrapper(m, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
          check_fn=lambda m: isinstance(m, (layer_type, PerceiverAttention)))


def wrap(model: nn.Module, d: Dist, rt: RuntimeSection, param_dtype: torch.dtype | None) -> nn.Module:
    """The model as the training loop calls it: itself, DDP(model) or the FSDP2-sharded model
    (the same object, its parameters now DTensors)."""
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [d.device.index] if d.device.type == "cuda" else None
        return DDP(model, device_ids=ids, find_unused_parameters=rt.find_unused_parameters)
    if d.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else MixedPrecisionPolicy()
        kw = dict(mp_policy=mp, reshard_after_forward=rt.fsdp_reshard_after_forward)
        for layer in _lm_layers(model):
            fully_shard(layer, **kw)
        fully_shard(model.vision_tokenizer, **kw)
        fully_shard(model, **kw)
        return model
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, d: Dist, last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if last or not d.distributed:
        yield
        return
    if isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
        return
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
        return
    yield


def all_sum(values: list[float], d: Dist) -> list[float]:
    if not d.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def all_any(values: list[bool], d: Dist) -> list[bool]:
    if not d.distributed:
        return values
    t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def barrier(d: Dist) -> None:
    if d.distributed:
        dist.barrier()


def clip_grad_norm(model: nn.Module, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The global gradient norm (over all ranks' shards under FSDP2), clipping when max_norm > 0."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm > 0 else float("inf"), foreach=False)
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
        norm = norm.full_tensor()
    return norm


def full_model_state(model: nn.Module, d: Dist) -> dict[str, torch.Tensor]:
    """Full (unsharded) model state on CPU, on rank 0 (empty dict elsewhere under FSDP)."""
    inner = unwrap(model)
    if d.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}


def load_full_model_state(model: nn.Module, state: dict, d: Dist) -> None:
    inner = unwrap(model)
    if d.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(inner, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
        return
    inner.load_state_dict(state, strict=True)


def full_optimizer_state(model: nn.Module, optimizer, d: Dist) -> dict:
    if d.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(unwrap(model), optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_full_optimizer_state(model: nn.Module, optimizer, state: dict, d: Dist) -> None:
    if d.strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(unwrap(model), optimizer, state,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
        return
    optimizer.load_state_dict(state)

"""Training: one trainer for every stage of the recipe (pretrain, sft, dpo, safety), LoRA,
DDP / FSDP2 under torchrun, exact resume, and the metrics a researcher watches.

    from xgenmm.train import load_config, run_stage
    final_dir = run_stage(load_config("configs/tiny/sft.yaml", ["schedule.max_steps=20"]))
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .config import ConfigError, TrainConfig, load_config

__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(["ConfigError", "TrainConfig", "load_config"], ".config"))


def run_stage(*args, **kwargs):
    """See `xgenmm.train.loop.run_stage`."""
    from .loop import run_stage as _run

    return _run(*args, **kwargs)


__all__ = ["ConfigError", "TrainConfig", "load_config", "run_stage"]

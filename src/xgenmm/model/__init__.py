"""The xGen-MM model: config, presets, the four parts, processor, checkpoints."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .config import XGenMMConfig
    from .processor import XGenMMProcessor
    from .xgenmm import XGenMM, XGenMMOutput

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["XGenMMConfig"], ".config"),
    **dict.fromkeys(["XGenMMProcessor"], ".processor"),
    **dict.fromkeys(["XGenMM", "XGenMMOutput"], ".xgenmm"),
})

__all__ = ["XGenMM", "XGenMMConfig", "XGenMMOutput", "XGenMMProcessor"]

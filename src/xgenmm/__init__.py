"""xgenmm: build data for, train, evaluate and serve xGen-MM (BLIP-3) models."""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time each name is imported on first use
    from .model import XGenMM, XGenMMConfig, XGenMMProcessor

__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["XGenMM", "XGenMMConfig", "XGenMMProcessor"], ".model"),
})

__all__ = ["XGenMM", "XGenMMConfig", "XGenMMProcessor"]
__version__ = "0.1.0"

"""The xGen-MM model: config, presets, the four parts, processor, checkpoints."""

from .config import XGenMMConfig
from .processor import XGenMMProcessor
from .xgenmm import XGenMM, XGenMMOutput

__all__ = ["XGenMM", "XGenMMConfig", "XGenMMOutput", "XGenMMProcessor"]

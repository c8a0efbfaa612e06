"""xgenmm: build data for, train, evaluate and serve xGen-MM (BLIP-3) models."""

from .model import XGenMM, XGenMMConfig, XGenMMProcessor

__all__ = ["XGenMM", "XGenMMConfig", "XGenMMProcessor"]
__version__ = "0.1.0"

"""Mixed precision for the Trainer: autocast, and loss scaling where float16 needs it."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Dict, Optional

import torch

logger = logging.getLogger(__name__)


class MixedPrecision:
    """bfloat16 autocast on CUDA cards that support it, else float16 with a gradient scaler;
    float32 (a no-op) when off or on a CPU. ``state_dict()`` holds the scaler's state."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device_type = device.type
        self.dtype: Optional[torch.dtype] = None
        self.scaler: Optional[torch.amp.GradScaler] = None
        if not enabled:
            return
        if device.type != "cuda":
            message = "mixed precision needs a CUDA device; training in float32 on the CPU"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)
            return
        self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring scaled gradients back to their true size (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)

"""Mixed precision for the Trainer: autocast, and loss scaling where float16 needs it."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Dict, Optional

import torch

from src.config import check_setting, default_of
from src.utils.device import cpu_computes_in_bfloat16

logger = logging.getLogger(__name__)


class MixedPrecision:
    """The arithmetic of training steps and evaluation, and ``state_dict()`` of its gradient scaler.

    On CUDA with ``enabled`` (``--amp``): bfloat16 autocast on cards that support it,
    else float16 with a gradient scaler. On a CPU, ``cpu_precision`` decides:
    bfloat16 autocast, float32, or "auto" (bfloat16 where the CPU has it in hardware).
    """

    def __init__(self, device: torch.device, enabled: bool, cpu_precision: str = default_of("precision")):
        self.device_type = device.type
        self.dtype: Optional[torch.dtype] = None
        self.scaler: Optional[torch.amp.GradScaler] = None
        if device.type == "cpu":
            self.dtype = cpu_training_dtype(cpu_precision)
        if not enabled:
            return
        if device.type != "cuda":
            message = "--amp is for CUDA devices; on the CPU, --precision chooses the arithmetic"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)
            return
        self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    @property
    def name(self) -> str:
        """float32, bfloat16 or float16: what the steps compute in."""
        return str(self.dtype or torch.float32).replace("torch.", "")

    def autocast(self):
        """The training step's autocast."""
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def evaluation_autocast(self):
        """Evaluation's (the validation reviews after each epoch): float32 on a CPU, where it is a small
        share of an epoch; on CUDA the same as training's. The final test scores use the arithmetic
        ``predict`` picks (``pipeline._finish``)."""
        enabled = self.dtype is not None and self.device_type == "cuda"
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=enabled)

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


def cpu_training_dtype(precision: str) -> Optional[torch.dtype]:
    """bfloat16 or None (float32) for training on this CPU (``cpu_computes_in_bfloat16``'s rule)."""
    precision = check_setting("precision", precision, "precision")
    return torch.bfloat16 if cpu_computes_in_bfloat16(precision) else None

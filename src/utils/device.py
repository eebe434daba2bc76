"""Device selection with a clear fallback."""

from __future__ import annotations

import logging
import warnings
from typing import Optional, Union

import torch

logger = logging.getLogger(__name__)


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU. An unavailable CUDA request falls
    back to CPU with a warning instead of failing halfway through training."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        message = f"device {device!r} requested but CUDA is not available; training on the CPU"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logger.warning(message)
        return torch.device("cpu")
    return chosen

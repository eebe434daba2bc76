"""Device selection with a clear fallback."""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import FrozenSet, Optional, Union

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


@functools.lru_cache(maxsize=1)
def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and ":" in line:
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bfloat16() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated
    and slower than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())

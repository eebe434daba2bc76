"""Device selection with a clear fallback."""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path
from typing import FrozenSet, Optional, Set, Union

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
        if str(device) not in _FALLBACKS_TOLD:  # once: a run resolves its device in several places
            _FALLBACKS_TOLD.add(str(device))
            logger.warning("device %r requested but CUDA is not available; running on the CPU", str(device))
        return torch.device("cpu")
    return chosen


_FALLBACKS_TOLD: Set[str] = set()


@functools.lru_cache(maxsize=None)
def cpuinfo_field(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo, matched whole ("model" is not "model name"); "" where
    there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    return frozenset(cpuinfo_field("flags").split())


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC ..."), or what the platform says where /proc/cpuinfo has none."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine() or "CPU"


def device_name(device: Union[str, torch.device]) -> str:
    """What a measurement ran on, in words: the GPU's name, or the CPU's model with its core count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def cpu_has_native_bfloat16() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated
    and slower than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_computes_in_bfloat16(precision: str) -> bool:
    """The one rule of a CPU's arithmetic, for training and prediction alike: "auto" means bfloat16 exactly
    where the CPU multiplies it in hardware, "float32" never, and "bfloat16" is refused (ValueError) where
    the CPU lacks the instructions, since its LSTM kernels fail without them."""
    native = cpu_has_native_bfloat16()
    if precision == "bfloat16" and not native:
        raise ValueError("--precision bfloat16 needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); "
                         "this one has none: use --precision float32 or auto")
    return precision == "bfloat16" or (precision == "auto" and native)


def available_memory() -> Optional[int]:
    """Bytes of memory that a process can still take without swapping (Linux's MemAvailable); None where
    the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None

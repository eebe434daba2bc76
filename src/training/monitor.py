"""The one rule for "is this an improvement?", shared by early stopping,
best-checkpoint tracking and plateau LR scheduling, so they never disagree."""

from __future__ import annotations

import math
from typing import Optional

MONITOR_MODES = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min", "train_accuracy": "max"}


def resolve_mode(monitor: str, mode: Optional[str] = None) -> str:
    """``"min"`` or ``"max"`` for ``monitor``; an explicit ``mode`` wins ("auto" = infer)."""
    if mode not in (None, "auto"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        return mode
    if monitor not in MONITOR_MODES:
        raise ValueError(f"cannot infer whether {monitor!r} should go up or down; pass mode='min' or 'max' "
                         f"(known metrics: {', '.join(MONITOR_MODES)})")
    return MONITOR_MODES[monitor]


def initial_best(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def is_improvement(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """True when ``value`` beats ``best`` by more than ``min_delta``; NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta

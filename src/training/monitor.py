"""The one notion of "best epoch": ``BestTracker``, read by early stopping, the best
checkpoint and the plateau learning-rate schedule, so they always name the same epoch."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

from src.config import check_setting, default_of

MONITOR_MODES = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min", "train_accuracy": "max"}
DEFAULT_MIN_DELTA: float = default_of("min_delta")


def resolve_mode(monitor: str, mode: Optional[str] = None) -> str:
    """``"min"`` or ``"max"`` for ``monitor``: inferred for a known metric ("auto"), else the ``mode`` given; a
    ``mode`` that contradicts a known metric is refused (it would keep the worst epoch as the best)."""
    if mode not in (None, "auto"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        if MONITOR_MODES.get(monitor, mode) != mode:
            raise ValueError(f"mode={mode!r} contradicts {monitor}, which is better when it goes "
                             f"{'down' if MONITOR_MODES[monitor] == 'min' else 'up'}; leave mode out")
        return mode
    if monitor not in MONITOR_MODES:
        raise ValueError(f"cannot infer whether {monitor!r} should go up or down; pass mode='min' or 'max' "
                         f"(known metrics: {', '.join(MONITOR_MODES)})")
    return MONITOR_MODES[monitor]


def initial_best(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def is_improvement(value: float, best: float, mode: str, min_delta: float) -> bool:
    """True when ``value`` beats ``best`` by more than ``min_delta``; NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


class BestTracker:
    """The best value of ``monitor`` so far, its epoch, and the epochs since.

    ``update(value, epoch)`` records one epoch and returns whether it is the new best:
    better than the best so far by more than ``min_delta``.
    """

    def __init__(self, monitor: str = "val_loss", mode: Optional[str] = None,
                 min_delta: float = DEFAULT_MIN_DELTA):
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.min_delta = check_setting("min_delta", min_delta, "min_delta")
        self.best_value = initial_best(self.mode)
        self.best_epoch: Optional[int] = None
        self.epochs_without_improvement = 0

    def update(self, value: float, epoch: Optional[int] = None) -> bool:
        value = float(value)
        if is_improvement(value, self.best_value, self.mode, self.min_delta):
            self.best_value, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
            return True
        self.epochs_without_improvement += 1
        return False

    def state_dict(self) -> Dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "min_delta": self.min_delta,
                "best_value": self.best_value, "best_epoch": self.best_epoch,
                "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the record; ``min_delta`` stays this run's (a resumed run may change it)."""
        if state["monitor"] != self.monitor:
            raise ValueError(f"the saved record follows {state['monitor']}, this run {self.monitor}")
        self.best_value, self.best_epoch = float(state["best_value"]), state["best_epoch"]
        self.epochs_without_improvement = int(state["epochs_without_improvement"])

"""Learning-rate schedulers by name.

The plateau schedule does not judge improvement itself: it is told, each epoch,
whether the run's ``BestTracker`` saw a new best, so it lowers the rate on exactly
the epochs that early stopping counts as "no improvement".
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau, StepLR

from src.config import SCHEDULER_TYPES, check_setting


class PlateauScheduler:
    """Multiply the learning rate by ``factor`` after more than ``patience`` epochs in a row
    without a new best (the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.5, patience: int = 2,
                 min_lr: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        self.optimizer, self.factor, self.patience, self.min_lr = optimizer, factor, patience, min_lr
        self.bad_epochs = 0

    def step(self, improved: bool) -> None:
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs > self.patience:
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
            self.bad_epochs = 0

    def get_last_lr(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"factor": self.factor, "patience": self.patience, "min_lr": self.min_lr,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.factor, self.patience, self.min_lr = state["factor"], state["patience"], state["min_lr"]
        self.bad_epochs = int(state["bad_epochs"])


def create_scheduler(optimizer: torch.optim.Optimizer, scheduler_type: Optional[str], epochs: int = 20,
                     step_size: int = 5, gamma: float = 0.5, plateau_patience: int = 2,
                     plateau_factor: float = 0.5):
    """``'plateau'``, ``'step'``, ``'cosine'`` or ``None``/``'none'`` (fixed learning rate)."""
    if scheduler_type is None:
        return None
    scheduler_type = check_setting("scheduler", scheduler_type, "scheduler_type")
    if scheduler_type == "plateau":
        return PlateauScheduler(optimizer, factor=plateau_factor, patience=plateau_patience)
    if scheduler_type == "step":
        return StepLR(optimizer, step_size=step_size, gamma=gamma)
    if scheduler_type == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    return None


def step_scheduler(scheduler, improved: bool, val_metrics: Dict[str, float]) -> None:
    """Advance ``scheduler`` by one epoch. Ours is told whether the epoch was a new best; a
    ``ReduceLROnPlateau`` passed in by a user gets the validation loss, or the accuracy if its
    mode is "max"."""
    if scheduler is None:
        return
    if isinstance(scheduler, PlateauScheduler):
        scheduler.step(improved)
    elif isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_metrics["accuracy"] if scheduler.mode == "max" else val_metrics["loss"])
    else:
        scheduler.step()


__all__ = ["SCHEDULER_TYPES", "PlateauScheduler", "create_scheduler", "step_scheduler"]

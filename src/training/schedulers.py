"""Learning-rate schedulers by name. The plateau scheduler judges improvement with
the same rule as early stopping and best-checkpoint tracking."""

from __future__ import annotations

from typing import Optional

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau, StepLR

from src.training.monitor import is_improvement

SCHEDULER_TYPES = ("plateau", "step", "cosine", "none")


class PlateauScheduler(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` on validation loss, with ``threshold`` as an absolute ``min_delta``."""

    def _is_better(self, a: float, best: float) -> bool:
        return is_improvement(float(a), float(best), self.mode, self.threshold)

    is_better = _is_better  # the hook's name before torch 2.6


def create_scheduler(optimizer: torch.optim.Optimizer, scheduler_type: Optional[str], epochs: int = 20,
                     step_size: int = 5, gamma: float = 0.5, plateau_patience: int = 2,
                     plateau_factor: float = 0.5, min_delta: float = 0.001):
    """``'plateau'``, ``'step'``, ``'cosine'`` or ``None``/``'none'`` (fixed learning rate)."""
    if scheduler_type is None or scheduler_type == "none":
        return None
    if scheduler_type == "plateau":
        return PlateauScheduler(optimizer, mode="min", factor=plateau_factor, patience=plateau_patience,
                                threshold=min_delta, threshold_mode="abs")
    if scheduler_type == "step":
        return StepLR(optimizer, step_size=step_size, gamma=gamma)
    if scheduler_type == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    raise ValueError(f"unknown scheduler {scheduler_type!r}; choose one of {', '.join(SCHEDULER_TYPES)}")


def step_scheduler(scheduler, val_loss: float) -> None:
    """Advance ``scheduler`` by one epoch (the plateau one looks at ``val_loss``)."""
    if scheduler is None:
        return
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


__all__ = ["SCHEDULER_TYPES", "LRScheduler", "PlateauScheduler", "create_scheduler", "step_scheduler"]

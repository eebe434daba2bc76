"""Learning-rate schedulers by name.

The plateau schedule does not judge improvement itself: it is told, each epoch,
whether the run's ``BestTracker`` saw a new best, so it lowers the rate on exactly
the epochs that early stopping counts as "no improvement". The slanted triangular
one (``per_step``) is advanced by the trainer after every optimizer step instead. The
cosine one's length follows the time limit when there is one (``fit_length``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR

from src.config import SCHEDULER_TYPES, check_setting


class PlateauScheduler:
    """Multiply the learning rate by ``factor`` after more than ``patience`` epochs in a row
    without a new best (the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau``). ``lowered`` says
    whether the last step lowered it (the trainer may then go back to the best weights)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.5, patience: int = 2,
                 min_lr: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        self.optimizer, self.factor, self.patience, self.min_lr = optimizer, factor, patience, min_lr
        self.bad_epochs = 0
        self.lowered = False

    def step(self, improved: bool) -> None:
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        self.lowered = self.bad_epochs > self.patience
        if self.lowered:
            for group in self.optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
            self.bad_epochs = 0

    def get_last_lr(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"factor": self.factor, "patience": self.patience, "min_lr": self.min_lr,
                "bad_epochs": self.bad_epochs, "lowered": self.lowered}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.factor, self.patience, self.min_lr = state["factor"], state["patience"], state["min_lr"]
        self.bad_epochs = int(state["bad_epochs"])
        self.lowered = bool(state.get("lowered", False))  # absent from checkpoints written before it existed


class Cosine:
    """Cosine annealing by epoch: after ``epochs`` epochs each parameter group learns at
    ``peak * (1 + cos(pi * epochs / length)) / 2`` (its peak is its rate when the schedule was made), so the
    rate falls from the peak towards zero over ``length`` epochs and stays at zero after them.
    ``planned`` is the length it was made with (``--epochs``); ``fit_length`` changes the length
    mid-run: ``--max-minutes`` sets it to the epochs the time limit leaves room for (at most
    ``planned``), so the rate is low in the last epochs the run will have."""

    def __init__(self, optimizer: torch.optim.Optimizer, length: int):
        self.optimizer, self.peaks, self.epochs = optimizer, [group["lr"] for group in optimizer.param_groups], 0
        self.fit_length(length)
        self.planned = self.length

    def fit_length(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"a cosine schedule needs a length of at least one epoch, got {length}")
        self.length = int(length)
        self._apply()

    def step(self) -> None:
        self.epochs += 1
        self._apply()

    def _apply(self) -> None:
        share = (1.0 + math.cos(math.pi * min(self.epochs, self.length) / self.length)) / 2.0
        for group, peak in zip(self.optimizer.param_groups, self.peaks):
            group["lr"] = peak * share

    def get_last_lr(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"length": self.length, "peaks": list(self.peaks), "epochs": self.epochs}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """The saved course; ``planned`` stays this schedule's own (a resumed run's ``--epochs``)."""
        if "T_max" in state:  # a checkpoint of torch's CosineAnnealingLR, the cosine schedule before this class
            state = {"length": state["T_max"], "peaks": state["base_lrs"], "epochs": state["last_epoch"]}
        self.peaks, self.epochs = _peaks_for(self.optimizer, state["peaks"]), int(state["epochs"])
        self.fit_length(int(state["length"]))


def _peaks_for(optimizer: torch.optim.Optimizer, peaks: List[Any]) -> List[float]:
    """Saved peak rates, one per parameter group of ``optimizer`` (ValueError if the count differs)."""
    if len(peaks) != len(optimizer.param_groups):
        raise ValueError(f"{len(peaks)} peak rates for {len(optimizer.param_groups)} parameter groups")
    return [float(peak) for peak in peaks]


class SlantedTriangular:
    """ULMFiT's schedule (Howard & Ruder 2018), set after every optimizer step: each parameter group's rate
    rises linearly from ``peak / ratio`` to its peak (its rate when the schedule was made) over the first
    ``cut_frac`` of ``total_steps``, then falls linearly back to ``peak / ratio`` at ``total_steps`` and stays."""

    per_step = True  # the trainer calls step_batch(); step_scheduler leaves it alone at the end of an epoch

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, cut_frac: float = 0.1,
                 ratio: float = 32.0):
        if total_steps < 1 or not 0.0 < cut_frac < 1.0 or ratio < 1.0:
            raise ValueError(f"a slanted triangular schedule needs total_steps >= 1, 0 < cut_frac < 1 and "
                             f"ratio >= 1, got {total_steps}, {cut_frac} and {ratio}")
        self.optimizer, self.total_steps, self.cut_frac, self.ratio = optimizer, total_steps, cut_frac, ratio
        self.peaks = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self._apply()

    def multiplier(self, step: int) -> float:
        """The share of the peak rate after ``step`` optimizer steps."""
        cut = max(1, math.floor(self.total_steps * self.cut_frac))
        rise = step / cut if step < cut else max(0.0, 1.0 - (step - cut) / max(1, self.total_steps - cut))
        return (1.0 + rise * (self.ratio - 1.0)) / self.ratio

    def step_batch(self) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        share = self.multiplier(self.steps)
        for group, peak in zip(self.optimizer.param_groups, self.peaks):
            group["lr"] = peak * share

    def get_last_lr(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        return {"total_steps": self.total_steps, "cut_frac": self.cut_frac, "ratio": self.ratio,
                "peaks": list(self.peaks), "steps": self.steps}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.total_steps, self.cut_frac, self.ratio = int(state["total_steps"]), state["cut_frac"], state["ratio"]
        self.peaks, self.steps = _peaks_for(self.optimizer, state["peaks"]), int(state["steps"])
        self._apply()


def create_scheduler(optimizer: torch.optim.Optimizer, scheduler_type: Optional[str], epochs: int = 20,
                     step_size: int = 5, gamma: float = 0.5, plateau_patience: int = 2,
                     plateau_factor: float = 0.5, steps_per_epoch: Optional[int] = None):
    """``'plateau'``, ``'step'``, ``'cosine'``, ``'slanted_triangular'`` (over ``epochs * steps_per_epoch``
    optimizer steps) or ``None``/``'none'`` (fixed learning rate)."""
    if scheduler_type is None:
        return None
    scheduler_type = check_setting("scheduler", scheduler_type, "scheduler_type")
    if scheduler_type == "slanted_triangular":
        if not steps_per_epoch:
            raise ValueError("the slanted triangular schedule needs steps_per_epoch (optimizer steps per epoch)")
        return SlantedTriangular(optimizer, total_steps=max(1, epochs) * steps_per_epoch)
    if scheduler_type == "plateau":
        return PlateauScheduler(optimizer, factor=plateau_factor, patience=plateau_patience)
    if scheduler_type == "step":
        return StepLR(optimizer, step_size=step_size, gamma=gamma)
    if scheduler_type == "cosine":
        return Cosine(optimizer, length=max(1, epochs))
    return None


def step_scheduler(scheduler, improved: bool, val_metrics: Dict[str, float]) -> None:
    """Advance ``scheduler`` by one epoch. Ours is told whether the epoch was a new best; a
    ``ReduceLROnPlateau`` passed in by a user gets the validation loss, or the accuracy if its
    mode is "max"."""
    if scheduler is None or getattr(scheduler, "per_step", False):
        return
    if isinstance(scheduler, PlateauScheduler):
        scheduler.step(improved)
    elif isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_metrics["accuracy"] if scheduler.mode == "max" else val_metrics["loss"])
    else:
        scheduler.step()


__all__ = ["SCHEDULER_TYPES", "Cosine", "PlateauScheduler", "SlantedTriangular", "create_scheduler", "step_scheduler"]

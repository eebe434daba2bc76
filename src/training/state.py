"""The parts of a training run's state that are not the model, the optimizer or a helper of
their own: the epoch in progress, the history of finished epochs, and the random state.
Each has ``state_dict()`` / ``load_state_dict()``; the Trainer's checkpoint is built from them."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import torch

from src.config import shown
from src.training.distributed import sum_over_ranks, world_size

HISTORY_LISTS = ("train_losses", "val_losses", "train_accuracies", "val_accuracies", "learning_rates",
                 "grad_norms", "epoch_times", "tokens_per_second")
PROGRESS_TOTALS = ("loss_sum", "correct", "seen", "tokens")


@dataclass
class EpochProgress:
    """Running totals of the epoch being trained; a mid-epoch checkpoint stores them."""

    epoch: int
    batches_done: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0
    tokens: float = 0.0
    norms: List[float] = field(default_factory=list)
    seconds: float = 0.0
    world_size: int = field(default_factory=world_size)

    def add(self, step: int, loss: float, correct: float, size: int, tokens: float, norm: Optional[float]) -> None:
        self.batches_done = step
        self.loss_sum += loss * size
        self.correct += correct
        self.seen += size
        self.tokens += tokens
        if norm is not None:
            self.norms.append(norm)

    def running(self) -> Dict[str, float]:
        """Loss and accuracy so far on this process (for the progress bar)."""
        return {"loss": self.loss_sum / self.seen, "accuracy": self.correct / self.seen}

    def over_all_ranks(self, device: torch.device) -> "EpochProgress":
        """A copy whose totals are summed over every process (what a checkpoint stores)."""
        merged = copy.deepcopy(self)
        for name, value in zip(PROGRESS_TOTALS, sum_over_ranks([getattr(self, k) for k in PROGRESS_TOTALS], device)):
            setattr(merged, name, value)
        return merged

    def without_totals(self) -> "EpochProgress":
        """A copy with zero totals: ranks other than 0 resume so, rank 0 carries the sums of all."""
        return EpochProgress(**{**asdict(self), **{name: 0.0 for name in PROGRESS_TOTALS}})

    def summary(self, elapsed: float, device: torch.device) -> Dict[str, float]:
        """The finished epoch's metrics over all processes."""
        loss_sum, correct, seen, tokens = sum_over_ranks([getattr(self, k) for k in PROGRESS_TOTALS], device)
        seen = max(seen, 1)
        return {"loss": loss_sum / seen, "accuracy": correct / seen,
                "grad_norm": sum(self.norms) / len(self.norms) if self.norms else float("nan"),
                "tokens_per_second": tokens / elapsed, "seconds": elapsed}

    def state_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: Dict[str, Any]) -> "EpochProgress":
        return cls(**copy.deepcopy(state))


class TrainingHistory(dict):
    """Per-epoch metrics and the run's totals, as the plain dict that ``Trainer.train`` returns."""

    def __init__(self) -> None:
        super().__init__({key: [] for key in HISTORY_LISTS})
        self.update(best_val_loss=float("inf"), best_val_accuracy=0.0, best_epoch=None, epochs_completed=0,
                    stopped_early=False, time_limit_reached=False, total_time=0.0)

    def record(self, epoch: int, lr: float, train_metrics: Dict[str, float], val_metrics: Dict[str, float],
               best_epoch: Optional[int], seconds: float) -> None:
        """One epoch's metrics; ``seconds`` its training and validation passes. The best values are the best
        epoch's (the weights of best_model.pt), chosen by the shared rule, not the extremes of the lists."""
        for key, value in (("train_losses", train_metrics["loss"]), ("val_losses", val_metrics["loss"]),
                           ("train_accuracies", train_metrics["accuracy"]),
                           ("val_accuracies", val_metrics["accuracy"]), ("learning_rates", lr),
                           ("grad_norms", train_metrics["grad_norm"]), ("epoch_times", train_metrics["seconds"]),
                           ("tokens_per_second", train_metrics["tokens_per_second"])):
            self[key].append(value)
        self["epochs_completed"] = epoch
        self["total_time"] += seconds
        self["best_epoch"] = best_epoch
        if best_epoch is not None:
            self["best_val_loss"] = self["val_losses"][best_epoch - 1]
            self["best_val_accuracy"] = self["val_accuracies"][best_epoch - 1]

    def last(self, key: str) -> Any:
        return self[key][-1] if self[key] else None

    def state_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(dict(self))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """The saved history; lists and totals that a checkpoint from before they existed lacks keep their
        defaults. Each saved list must hold one number per completed epoch."""
        merged = {**TrainingHistory(), **copy.deepcopy(state)}
        epochs = merged["epochs_completed"]
        if not (type(epochs) is int and epochs >= 0):
            raise ValueError(f"its epochs_completed must be a whole number of at least 0, not {shown(epochs)}")
        for key in (key for key in HISTORY_LISTS if key in state):
            values = merged[key]
            if not (isinstance(values, list) and len(values) == epochs and all(map(is_number, values))):
                raise ValueError(f"its {key} must be a list of {epochs} numbers, one per completed epoch")
        self.clear()
        self.update(merged)


KERNEL_SETTINGS = ("fused", "foreach")  # how this machine runs an optimizer's update, not what the update is


def is_number(value: Any) -> bool:
    """An int or float (of any subtype) but not a bool: what a saved count, metric or setting may be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """Refuse a saved optimizer state that does not fit ``optimizer``: torch loads it unchecked, and its fused
    CPU kernels then read past a buffer of another shape (a crash, or all the memory). Each saved group's
    settings must have the types of this optimizer's, each buffer but ``step`` the shape of its parameter,
    and Adam's buffers must all be there."""
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"its optimizer has {len(groups)} parameter groups, this one {len(optimizer.param_groups)}")
    by_key: Dict[Any, Tuple[torch.Tensor, Dict[str, Any]]] = {}
    for saved_group, group in zip(groups, optimizer.param_groups):
        _check_group_settings(saved_group, group)
        if len(saved_group["params"]) != len(group["params"]):
            raise ValueError(f"its optimizer has groups of {len(saved_group['params'])} parameters where this one "
                             f"has {len(group['params'])}")
        by_key.update((key, (param, saved_group)) for key, param in zip(saved_group["params"], group["params"]))
    for key, buffers in state["state"].items():
        if key not in by_key:
            raise ValueError(f"its optimizer keeps a state for a parameter it does not have ({shown(key)})")
        param, saved_group = by_key[key]
        needed = _adam_buffers(optimizer, saved_group)
        if needed - set(buffers):
            raise ValueError(f"its optimizer's state of a parameter lacks {', '.join(sorted(needed - set(buffers)))}")
        for name, value in buffers.items():
            _check_buffer(name, value, param, tensor=name in needed)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping this optimizer's own kernel settings: torch takes the saved
    groups' settings whole, so a checkpoint written on a GPU (``fused=None``) resumed on the CPU without the
    fused kernel (``build_optimizer``), at about 5% of each step."""
    own = [{key: group[key] for key in KERNEL_SETTINGS if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, own):
        group.update(settings)


def _adam_buffers(optimizer: torch.optim.Optimizer, group: Dict[str, Any]) -> Set[str]:
    """The buffers Adam and AdamW keep for every parameter they have updated (none known for others)."""
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return set()
    return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group.get("amsgrad") else set())


def _check_buffer(name: str, value: Any, param: torch.Tensor, tensor: bool) -> None:
    """A buffer but ``step`` (a tensor where ``tensor``) of its parameter's shape, of floating point and laid
    out as one block: the fused kernels write ``numel`` elements from its first one, whatever its strides."""
    if name == "step":
        if not (is_number(value) or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            raise ValueError(f"its optimizer's step count is {shown(value)}, not a number")
    elif isinstance(value, torch.Tensor):
        if (value.shape != param.shape or not value.is_floating_point() or value.layout is not torch.strided
                or not value.is_contiguous()):
            raise ValueError(f"its optimizer's {shown(name)} of a parameter of shape {tuple(param.shape)} is a "
                             f"{value.dtype} tensor of shape {tuple(value.shape)} (contiguous: "
                             f"{value.layout is torch.strided and value.is_contiguous()})")
    elif tensor:
        raise ValueError(f"its optimizer's {shown(name)} is {shown(value)}, not a tensor")


def _check_group_settings(saved: Dict[str, Any], group: Dict[str, Any]) -> None:
    """Each setting both groups have (learning rate, betas, flags...) of the kind this optimizer's is: torch
    takes the saved ones in place of its own."""
    for key in set(saved) & set(group) - {"params"}:
        value, own = saved[key], group[key]
        if isinstance(own, bool) or own is None:
            fits = isinstance(value, bool) or value is None
        elif is_number(own):
            fits = is_number(value) and math.isfinite(value)
        elif isinstance(own, (tuple, list)):
            fits = isinstance(value, (tuple, list)) and len(value) == len(own) and all(
                is_number(item) and math.isfinite(item) for item in value)
        else:
            fits = type(value) is type(own)
        if not fits:
            raise ValueError(f"its optimizer's {shown(key)} is {shown(value)}, where this one's is {shown(own)}")


def rng_state_dict() -> Dict[str, Any]:
    """torch's random state on the CPU and every CUDA device."""
    state: Dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state_dict(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([item.cpu() for item in state["cuda"]])

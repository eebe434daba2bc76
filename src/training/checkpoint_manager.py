"""Checkpoint retention and early stopping.

``CheckpointManager`` writes one checkpoint per saved epoch, keeps the most recent
``max_checkpoints`` plus the ``save_best_n`` with the lowest validation loss and the
highest validation accuracy, mirrors the best epoch (as the run's ``BestTracker``
judges it) as ``best_model.pt``, and records all of it in
``checkpoint_registry.json``. ``EarlyStopping`` decides when to stop, reading the
same tracker. Both have ``state_dict()`` / ``load_state_dict()`` so a resumed run
continues with the same bookkeeping.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn

from src.exceptions import CheckpointError
from src.utils.checkpoint_io import link_or_copy, load_state, save_state
from src.config import check_setting, default_of, shown
from src.training.monitor import DEFAULT_MIN_DELTA, BestTracker, is_improvement
from src.training.state import is_number
from src.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

REGISTRY_NAME = "checkpoint_registry.json"
BEST_NAME = "best_model.pt"
RANKINGS = {"loss": ("val_loss", "min"), "accuracy": ("val_accuracy", "max")}


class CheckpointManager:
    """Saves, ranks, prunes and finds checkpoints in one directory."""

    def __init__(self, checkpoint_dir: Union[str, Path] = default_of("checkpoint_dir"),
                 max_checkpoints: int = default_of("max_checkpoints"), save_best_n: int = default_of("save_best_n")):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_checkpoints = check_setting("max_checkpoints", max_checkpoints, "max_checkpoints")
        self.save_best_n = check_setting("save_best_n", save_best_n, "save_best_n")
        self.monitor = default_of("monitor")  # the metric whose best epoch best_path names; the Trainer sets it
        self.entries: List[Dict[str, Any]] = []
        self.best_path: Optional[str] = None
        self._read_registry()

    # -- registry ---------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.checkpoint_dir / REGISTRY_NAME

    def _read_registry(self) -> None:
        if not self.registry_path.is_file():
            return
        try:
            self.load_state_dict(json.loads(self.registry_path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("ignoring damaged checkpoint registry %s (%s)", self.registry_path, err)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "entries": copy.deepcopy(self.entries),
            "best_path": self.best_path,
            "best_by_loss": self.best_names("loss"),
            "best_by_accuracy": self.best_names("accuracy"),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        check_registry_state(state)
        self.entries, self.best_path = [dict(entry) for entry in state["entries"]], state.get("best_path")

    def _write_registry(self) -> None:
        atomic_write_json(self.registry_path, self.state_dict())

    # -- ranking ------------------------------------------------------------
    def _ranked(self, metric: str) -> List[Dict[str, Any]]:
        if metric not in RANKINGS:
            raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
        key, mode = RANKINGS[metric]
        ranked: List[Dict[str, Any]] = []
        for entry in sorted(self.entries, key=lambda e: e["epoch"]):
            position = len(ranked)
            while position > 0 and is_improvement(entry[key], ranked[position - 1][key], mode, min_delta=0.0):
                position -= 1
            ranked.insert(position, entry)
        return ranked

    def best_names(self, metric: str) -> List[str]:
        return [entry["file"] for entry in self._ranked(metric)[: self.save_best_n]]

    # -- saving -------------------------------------------------------------
    def save_checkpoint(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], epoch: int,
                        train_loss: float, val_loss: float, val_accuracy: float, is_best: bool = False,
                        state: Optional[Dict[str, Any]] = None, **extra_metrics: float) -> Path:
        """Write the checkpoint of ``epoch`` and prune old ones.

        ``state`` is the full training state built by the Trainer; without it the file
        holds the model and optimizer. The registry names this file before it is
        written, and the registry's own state is saved inside the checkpoint.
        """
        name = self.checkpoint_path(epoch).name
        entry = {"file": name, "epoch": int(epoch), "train_loss": float(train_loss),
                 "val_loss": float(val_loss), "val_accuracy": float(val_accuracy),
                 "created": time.time(), **{k: float(v) for k, v in extra_metrics.items()}}
        self.entries = [e for e in self.entries if e["file"] != name] + [entry]
        if is_best:
            self.best_path = name
        payload = dict(state) if state is not None else _minimal_state(model, optimizer)
        payload.update(epoch=int(epoch), metrics=dict(entry), checkpoint_manager=self.state_dict())
        path = self._save(name, payload, is_best)
        self._write_registry()
        self._prune()
        return path

    def write(self, name: str, state: Dict[str, Any], is_best: bool = False) -> Path:
        """Write ``state`` as ``name`` in the checkpoint folder (not an epoch checkpoint: it is not
        ranked or pruned); a best one is mirrored as ``best_model.pt`` and named in the registry."""
        if is_best:
            self.best_path = name
        path = self._save(name, state, is_best)
        if is_best:
            self._write_registry()
        return path

    def _save(self, name: str, state: Dict[str, Any], is_best: bool) -> Path:
        path = save_state(self.checkpoint_dir / name, state)
        if is_best:
            link_or_copy(path, self.checkpoint_dir / BEST_NAME)
        return path

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"checkpoint_epoch_{epoch:03d}.pt"

    def _prune(self) -> None:
        """Delete checkpoints that are neither recent nor among the best; never a registered best."""
        recent = sorted(self.entries, key=lambda e: e["epoch"])[-self.max_checkpoints:]
        keep = {e["file"] for e in recent} | set(self.best_names("loss")) | set(self.best_names("accuracy"))
        if self.best_path:
            keep.add(self.best_path)
        dropped = [e for e in self.entries if e["file"] not in keep]
        if not dropped:
            return
        self.entries = [e for e in self.entries if e["file"] in keep]
        self._write_registry()  # first forget the files, then delete them
        for entry in dropped:
            (self.checkpoint_dir / entry["file"]).unlink(missing_ok=True)

    # -- finding --------------------------------------------------------------
    def load_best_checkpoint(self, metric: str = "loss") -> Optional[Path]:
        """Path of the best checkpoint by ``"loss"`` or ``"accuracy"`` (None if there is none).

        For the metric the run monitors, that is the best epoch the run recorded (``best_model.pt``'s),
        whose gain had to exceed ``min_delta``; for the other, the lowest loss or highest accuracy."""
        if self.best_path is not None and RANKINGS.get(metric, ("",))[0] == self.monitor:
            return self.checkpoint_dir / self.best_path
        ranked = self._ranked(metric)
        return self.checkpoint_dir / ranked[0]["file"] if ranked else None

    def latest_checkpoint(self) -> Optional[Path]:
        if not self.entries:
            return None
        return self.checkpoint_dir / max(self.entries, key=lambda e: e["epoch"])["file"]

    def list_checkpoints(self) -> List[Dict[str, Any]]:
        """Registered checkpoints, oldest first, with their metrics and paths."""
        return [dict(e, path=str(self.checkpoint_dir / e["file"]))
                for e in sorted(self.entries, key=lambda e: e["epoch"])]

    def get_checkpoint_info(self, path: Union[str, Path]) -> Dict[str, Any]:
        """Epoch, metrics, format version, size and model config of a checkpoint file."""
        state = load_state(path)
        return {
            "path": str(path), "format_version": state["format_version"], "epoch": state.get("epoch"),
            "metrics": state.get("metrics", {}), "model_config": state.get("model_config"),
            "size_bytes": Path(path).stat().st_size,
        }


def check_registry_state(state: Dict[str, Any]) -> None:
    """Refuse a registry (``state_dict()``'s output) whose names could reach outside its folder, since pruning
    deletes the files it names: the entries must be epoch checkpoints named as their epochs', with numeric
    validation metrics, the best checkpoint a path inside the folder (``Trainer.save_checkpoint`` may name a
    subfolder)."""
    if not isinstance(state["entries"], list) or not all(isinstance(entry, dict) for entry in state["entries"]):
        raise ValueError("its entries are not a list of records")
    for entry in state["entries"]:
        epoch, name = entry.get("epoch"), entry.get("file")
        if not (type(epoch) is int and epoch >= 0):
            raise ValueError(f"registered checkpoint {shown(name)} has the epoch {shown(epoch)}, not a whole number")
        if name != f"checkpoint_epoch_{epoch:03d}.pt":
            raise ValueError(f"registered checkpoint {shown(name)} of epoch {epoch} is not named "
                             f"checkpoint_epoch_{epoch:03d}.pt")
        if not all(is_number(entry.get(key)) for key in ("val_loss", "val_accuracy")):
            raise ValueError(f"registered checkpoint {name} lacks a numeric validation loss and accuracy")
    best = state.get("best_path")
    if best is not None and (not isinstance(best, str) or not best or Path(best).is_absolute()
                             or ".." in Path(best).parts):
        raise ValueError(f"the best checkpoint must be a path inside the checkpoint folder, not {shown(best)}")


def _minimal_state(model: nn.Module, optimizer: Optional[torch.optim.Optimizer]) -> Dict[str, Any]:
    state: Dict[str, Any] = {"model_state": model.state_dict()}
    config = getattr(model, "config", None)
    if config is not None:
        state["model_config"] = dict(vars(config))
    if optimizer is not None:
        state["optimizer_state"] = optimizer.state_dict()
    return state


def create_checkpoint_manager(checkpoint_dir: Union[str, Path] = default_of("checkpoint_dir"),
                              max_checkpoints: int = default_of("max_checkpoints"),
                              save_best_n: int = default_of("save_best_n")) -> CheckpointManager:
    return CheckpointManager(checkpoint_dir, max_checkpoints, save_best_n)


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``early_stopping(value, model, epoch)`` records one epoch and returns True when
    training should stop. With ``restore_best_weights`` it keeps a copy of the best
    weights, which ``restore_best(model)`` puts back. The Trainer passes its own
    ``tracker`` (already updated each epoch) and calls ``after_epoch`` instead, so that
    early stopping, the best checkpoint and the plateau schedule share one record.
    """

    def __init__(self, patience: int = default_of("early_stopping_patience"), min_delta: float = DEFAULT_MIN_DELTA,
                 monitor: str = "val_loss", mode: Optional[str] = None, restore_best_weights: bool = True,
                 tracker: Optional[BestTracker] = None):
        if patience is None:
            raise ValueError("patience must be at least 1, got None")
        self.patience = check_setting("early_stopping_patience", patience, "patience")
        self.tracker = tracker if tracker is not None else BestTracker(monitor, mode, min_delta)
        self._owns_tracker = tracker is None
        self.restore_best_weights = restore_best_weights
        self.stopped_epoch: Optional[int] = None
        self.best_weights: Optional[Dict[str, torch.Tensor]] = None

    monitor = property(lambda self: self.tracker.monitor)
    mode = property(lambda self: self.tracker.mode)
    min_delta = property(lambda self: self.tracker.min_delta)
    best_value = property(lambda self: self.tracker.best_value)
    best_epoch = property(lambda self: self.tracker.best_epoch)
    counter = property(lambda self: self.tracker.epochs_without_improvement)

    def __call__(self, value: float, model: Optional[nn.Module] = None, epoch: Optional[int] = None) -> bool:
        return self.after_epoch(self.tracker.update(value, epoch), model, epoch)

    def after_epoch(self, improved: bool, model: Optional[nn.Module] = None, epoch: Optional[int] = None) -> bool:
        """Keep the weights of a new best; True when ``patience`` epochs in a row brought none."""
        if improved:
            if self.restore_best_weights and model is not None:
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        if self.tracker.epochs_without_improvement < self.patience:
            return False
        self.stopped_epoch = epoch
        logger.info("early stopping: %s has not improved for %d epochs (best %.4f at epoch %s)",
                    self.monitor, self.counter, self.best_value, self.best_epoch)
        return True

    def restore_best(self, model: nn.Module) -> bool:
        """Load the best weights seen into ``model``; False if none were kept."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    def state_dict(self) -> Dict[str, Any]:
        """Patience, stop epoch and best weights; the record too when this object owns it."""
        state = {"patience": self.patience, "restore_best_weights": self.restore_best_weights,
                 "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}
        if self._owns_tracker:
            state["tracker"] = self.tracker.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        try:
            for key in ("patience", "restore_best_weights", "stopped_epoch", "best_weights"):
                setattr(self, key, state[key])
            if self._owns_tracker:
                self.tracker.load_state_dict(state["tracker"])
        except KeyError as err:
            raise CheckpointError(f"early-stopping state is missing {err}") from None


def create_early_stopping(patience: int = default_of("early_stopping_patience"),
                          min_delta: float = DEFAULT_MIN_DELTA, monitor: str = "val_loss",
                          mode: Optional[str] = None, restore_best_weights: bool = True) -> EarlyStopping:
    return EarlyStopping(patience, min_delta, monitor, mode, restore_best_weights)

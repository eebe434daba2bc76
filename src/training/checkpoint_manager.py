"""Checkpoint retention and early stopping.

``CheckpointManager`` writes one checkpoint per saved epoch, keeps the most recent
``max_checkpoints`` plus the best ``save_best_n`` by validation loss and by
validation accuracy, mirrors the best one as ``best_model.pt``, and records all of
it in ``checkpoint_registry.json``. ``EarlyStopping`` decides when to stop. Both use
``is_improvement`` from ``monitor.py`` and both have ``state_dict()`` /
``load_state_dict()`` so a resumed run continues with the same bookkeeping.
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
from src.training.checkpoint_io import link_or_copy, load_state, save_state
from src.training.monitor import initial_best, is_improvement, resolve_mode
from src.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

REGISTRY_NAME = "checkpoint_registry.json"
BEST_NAME = "best_model.pt"
RANKINGS = {"loss": ("val_loss", "min"), "accuracy": ("val_accuracy", "max")}


class CheckpointManager:
    """Saves, ranks, prunes and finds checkpoints in one directory."""

    def __init__(self, checkpoint_dir: Union[str, Path] = "checkpoints", max_checkpoints: int = 5,
                 save_best_n: int = 3):
        if max_checkpoints < 1 or save_best_n < 1:
            raise ValueError("max_checkpoints and save_best_n must be at least 1 "
                             f"(got {max_checkpoints} and {save_best_n})")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_checkpoints = max_checkpoints
        self.save_best_n = save_best_n
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
        self.entries = [dict(entry) for entry in state["entries"]]
        self.best_path = state.get("best_path")

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
            while position > 0 and is_improvement(entry[key], ranked[position - 1][key], mode):
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
        path = save_state(self.checkpoint_dir / name, payload)
        if is_best:
            link_or_copy(path, self.checkpoint_dir / BEST_NAME)
        self._write_registry()
        self._prune()
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
        """Path of the best checkpoint by ``"loss"`` or ``"accuracy"`` (None if there is none)."""
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


def _minimal_state(model: nn.Module, optimizer: Optional[torch.optim.Optimizer]) -> Dict[str, Any]:
    state: Dict[str, Any] = {"model_state": model.state_dict()}
    config = getattr(model, "config", None)
    if config is not None:
        state["model_config"] = dict(vars(config))
    if optimizer is not None:
        state["optimizer_state"] = optimizer.state_dict()
    return state


def create_checkpoint_manager(checkpoint_dir: Union[str, Path] = "checkpoints", max_checkpoints: int = 5,
                              save_best_n: int = 3) -> CheckpointManager:
    return CheckpointManager(checkpoint_dir, max_checkpoints, save_best_n)


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``early_stopping(value, model, epoch)`` records one epoch and returns True when
    training should stop. With ``restore_best_weights`` it keeps a copy of the best
    weights, which ``restore_best(model)`` puts back.
    """

    def __init__(self, patience: int = 7, min_delta: float = 0.001, monitor: str = "val_loss",
                 mode: Optional[str] = None, restore_best_weights: bool = True):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must not be negative, got {min_delta}")
        self.patience = patience
        self.min_delta = min_delta
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.best_value = initial_best(self.mode)
        self.best_epoch: Optional[int] = None
        self.counter = 0
        self.stopped_epoch: Optional[int] = None
        self.best_weights: Optional[Dict[str, torch.Tensor]] = None

    @property
    def should_stop(self) -> bool:
        return self.stopped_epoch is not None

    def __call__(self, value: float, model: Optional[nn.Module] = None, epoch: Optional[int] = None) -> bool:
        value = float(value)
        if is_improvement(value, self.best_value, self.mode, self.min_delta):
            self.best_value, self.best_epoch, self.counter = value, epoch, 0
            if self.restore_best_weights and model is not None:
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.counter += 1
            if self.counter >= self.patience:
                self.stopped_epoch = epoch
                logger.info("early stopping: %s has not improved for %d epochs (best %.4f at epoch %s)",
                            self.monitor, self.counter, self.best_value, self.best_epoch)
                return True
        return False

    def restore_best(self, model: nn.Module) -> bool:
        """Load the best weights seen into ``model``; False if none were kept."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    def state_dict(self) -> Dict[str, Any]:
        return {
            "patience": self.patience, "min_delta": self.min_delta, "monitor": self.monitor,
            "mode": self.mode, "restore_best_weights": self.restore_best_weights,
            "best_value": self.best_value, "best_epoch": self.best_epoch, "counter": self.counter,
            "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        try:
            for key in ("patience", "min_delta", "monitor", "mode", "restore_best_weights", "best_value",
                        "best_epoch", "counter", "stopped_epoch", "best_weights"):
                setattr(self, key, state[key])
        except KeyError as err:
            raise CheckpointError(f"early-stopping state is missing {err}") from None


def create_early_stopping(patience: int = 7, min_delta: float = 0.001, monitor: str = "val_loss",
                          mode: Optional[str] = None, restore_best_weights: bool = True) -> EarlyStopping:
    return EarlyStopping(patience, min_delta, monitor, mode, restore_best_weights)

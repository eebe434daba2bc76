"""The final weights of a run: its best epoch's, or their average with the epochs right after it.

Stochastic weight averaging (Izmailov et al. 2018) averages the weights that a run
passes through at a constant learning rate; the average often sits in a flatter
place than any one of them and generalises better. After training, with
``--average-epochs N``, the run scores on the validation split the averages of
its best epoch with the next one, the next two, ... (up to N epochs in a row,
from the epoch checkpoints it kept), and keeps the first one that beats the best
epoch by the run's own rule of "better" (``is_improvement``: the monitored metric
and ``--min-delta``), then any longer one that beats that. Validation, not the
test split, decides, so the average replaces the best epoch only where
validation prefers it. bench/README.md measures it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Sequence

import torch

from src.training.checkpoint_manager import CheckpointManager
from src.training.distributed import barrier
from src.training.monitor import is_improvement
from src.utils.checkpoint_io import WEIGHTS_FORMAT_VERSIONS, load_state

if TYPE_CHECKING:
    from src.training.trainer import Trainer

logger = logging.getLogger(__name__)


def average_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The element-wise mean of the floating-point tensors of model state dicts (others from the last)."""
    averaged = dict(states[-1])
    for name, value in averaged.items():
        if value.is_floating_point():
            averaged[name] = torch.stack([state[name].to(value.device) for state in states]).mean(dim=0)
    return averaged


def epochs_in_a_row(registry: CheckpointManager, first: int, count: int) -> List[Dict[str, Any]]:
    """The registry entries of epochs ``first``, ``first + 1``, ... (at most ``count``), up to the first
    epoch whose checkpoint was not kept."""
    kept = {entry["epoch"]: entry for entry in registry.list_checkpoints()}
    row = []
    for epoch in range(first, first + count):
        if epoch not in kept:
            break
        row.append(kept[epoch])
    return row


def settle_final_weights(trainer: Trainer, average_epochs: int) -> Dict[str, Any]:
    """Put the run's final weights into ``trainer.model`` and say which they are: ``{"epochs": [...]}``
    (the best epoch alone, or the averaged ones) with the validation ``loss`` and ``accuracy`` of an
    average. Every rank of a torchrun run calls it (validation is sharded); each reads the checkpoints that
    rank 0 wrote from the run directory, which all ranks share."""
    barrier()  # rank 0's last checkpoint and registry are written
    registry = CheckpointManager(trainer.checkpoint_dir)
    best_epoch = trainer.best.best_epoch
    if registry.best_path is None or best_epoch is None:
        return {"epochs": []}
    trainer.load_checkpoint(trainer.checkpoint_dir / registry.best_path, load_optimizer=False)
    row = epochs_in_a_row(registry, best_epoch, average_epochs)
    if len(row) < 2:
        return {"epochs": [best_epoch]}
    best_weights = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    states = [best_weights] + [load_state(entry["path"], map_location=trainer.device,
                                          versions=WEIGHTS_FORMAT_VERSIONS)["model_state"] for entry in row[1:]]
    chosen, chosen_value, chosen_scores = [best_epoch], trainer.best.best_value, {}
    for count in range(2, len(states) + 1):
        trainer.model.load_state_dict(average_weights(states[:count]))
        scores = trainer.evaluate_model(trainer.val_loader)
        value = trainer.monitored_value(scores)
        logger.info("average of epochs %d-%d: validation loss %.4f, accuracy %.2f%%", best_epoch,
                    best_epoch + count - 1, scores["loss"], 100 * scores["accuracy"])
        if is_improvement(value, chosen_value, trainer.best.mode, trainer.best.min_delta):
            chosen, chosen_value = [entry["epoch"] for entry in row[:count]], value
            chosen_scores = {"loss": scores["loss"], "accuracy": scores["accuracy"]}
    trainer.model.load_state_dict(average_weights(states[:len(chosen)]))
    final = {"epochs": chosen, **chosen_scores}
    logger.info("final weights: %s%s", describe_final_weights(final),
                "" if len(chosen) > 1 else " (no average beat it on validation)")
    return final


def describe_final_weights(final: Mapping[str, Any]) -> str:
    """"epoch 7" or "the average of epochs 7-9", from ``settle_final_weights``' result."""
    epochs = final.get("epochs") or []
    if len(epochs) > 1:
        return f"the average of epochs {epochs[0]}-{epochs[-1]}"
    return f"epoch {epochs[0]}" if epochs else "the last epoch"

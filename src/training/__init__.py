"""Training: the Trainer, checkpoints, the best-epoch tracker, early stopping, schedulers, GloVe embeddings."""

from src.training.checkpoint_manager import (
    CheckpointManager, EarlyStopping, create_checkpoint_manager, create_early_stopping,
)
from src.training.glove_loader import GloVeLoader, initialize_model_with_glove
from src.training.monitor import BestTracker, is_improvement
from src.training.schedulers import create_scheduler
from src.training.trainer import Trainer, create_trainer

__all__ = [
    "BestTracker", "CheckpointManager", "EarlyStopping", "GloVeLoader", "Trainer", "create_checkpoint_manager",
    "create_early_stopping", "create_scheduler", "create_trainer", "initialize_model_with_glove", "is_improvement",
]

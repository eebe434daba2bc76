"""Where each epoch's numbers go: ``metrics.jsonl`` in the run directory and, optionally, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from src.utils.io import atomic_write_text

TENSORBOARD_SCALARS = (("loss/train", "train_loss"), ("loss/validation", "val_loss"),
                       ("accuracy/train", "train_accuracy"), ("accuracy/validation", "val_accuracy"),
                       ("learning_rate", "learning_rate"), ("gradient_norm", "grad_norm"),
                       ("throughput/tokens_per_second", "tokens_per_second"))


class EpochLog:
    """One JSON line per epoch (rewritten atomically), plus TensorBoard scalars when a folder is given."""

    def __init__(self, run_dir: Path, tensorboard_dir: Optional[Path] = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tensorboard_dir = tensorboard_dir
        self._writer = None

    def keep_until(self, epoch: int) -> None:
        """Drop lines after ``epoch`` (an earlier run's, or epochs lost to a crash before their checkpoint)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["epoch"] <= epoch:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(self.path, "".join(kept))

    def write(self, line: Dict[str, Any]) -> None:
        earlier = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        atomic_write_text(self.path, earlier + json.dumps(line) + "\n")
        if self.tensorboard_dir is not None:
            self._tensorboard(line)

    def _tensorboard(self, line: Dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed or resumed run logged after this epoch
            self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=line["epoch"])
        for tag, key in TENSORBOARD_SCALARS:
            self._writer.add_scalar(tag, line[key], line["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

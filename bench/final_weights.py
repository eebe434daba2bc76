"""What ``--average-epochs N`` would keep for a finished run, and its test accuracy against the best epoch's.

Training's final step (``src/training/averaging.py``) scores on validation the
averages of the best epoch's weights with the epochs after it and keeps one only
where validation prefers it. A seeded CPU run trains the same epochs whatever
``--average-epochs`` is, so this bench can replay that step on any finished run
directory that kept the epochs after its best: it rebuilds the run's split, runs
``settle_final_weights`` itself, and scores the LSTM alone on the test split in
the arithmetic the pipeline's final scores use, for the best epoch alone and for
the weights kept. One JSON line per run directory.

    .venv/bin/python bench/final_weights.py --data-dir data/imdb --average-epochs 3 RUN_DIR [RUN_DIR ...]
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.average_checkpoints import epoch_checkpoints, run_loaders  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from src.data.preprocessing import TextPreprocessor  # noqa: E402
from src.inference.predictor import SentimentPredictor, prediction_dtype  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training import create_trainer  # noqa: E402
from src.training.averaging import settle_final_weights  # noqa: E402
from src.utils.checkpoint_io import load_state  # noqa: E402

CPU = torch.device("cpu")


def lstm_test_accuracy(model: LSTMClassifier, preprocessor: TextPreprocessor, test) -> float:
    """The LSTM alone on the test split, as the pipeline's final scores compute it."""
    lstm = SentimentPredictor(model, preprocessor, device=CPU, dtype=prediction_dtype("auto", CPU))
    return float(np.mean((lstm.lstm_log_odds(test.texts) > 0) == (np.asarray(test.labels) == 1)))


def replay(run_dir: Path, average_epochs: int, data_dir: Optional[str]) -> Dict[str, Any]:
    last = load_state(epoch_checkpoints(run_dir)[-1])
    settings, preprocessor = last["run_config"], TextPreprocessor.from_dict(last["preprocessor"])
    train_loader, val_loader, test_loader = run_loaders(settings, preprocessor, data_dir)
    model = LSTMClassifier.from_config(last["model_config"])
    trainer = create_trainer(model, train_loader, val_loader, checkpoint_dir=run_dir, progress=False, device=CPU,
                             monitor=settings["monitor"], min_delta=settings["min_delta"])
    manager = trainer.checkpoint_manager
    best = next(entry for entry in manager.list_checkpoints() if entry["file"] == manager.best_path)
    trainer.best.update(best[trainer.monitor], best["epoch"])  # the registry names its metrics as --monitor does
    started = time.perf_counter()
    final = settle_final_weights(trainer, average_epochs)
    seconds = time.perf_counter() - started
    kept_test = lstm_test_accuracy(trainer.model, preprocessor, test_loader.dataset)
    trainer.load_checkpoint(run_dir / manager.best_path, load_optimizer=False)
    return {"run_dir": run_dir.name, "seed": settings["seed"], "average_epochs": average_epochs,
            "best_epoch": best["epoch"], "best_val_loss": round(best["val_loss"], 4),
            "best_test_accuracy": lstm_test_accuracy(trainer.model, preprocessor, test_loader.dataset),
            "kept_epochs": final["epochs"], "kept_val_loss": round(final.get("loss", best["val_loss"]), 4),
            "kept_test_accuracy": kept_test, "averaging_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished runs' --checkpoint-dir")
    parser.add_argument("--average-epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="the runs' --data-dir, if it has moved since")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        print(json.dumps({**replay(run_dir, args.average_epochs, args.data_dir), **cpu_facts()}), flush=True)


if __name__ == "__main__":
    main()

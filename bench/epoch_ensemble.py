"""The best epochs of a finished run as an ensemble: their averaged predictions against the best epoch's.

A run keeps its ``--save-best-n`` best epochs (3 by default) by the metric it
monitors. Averaging their LSTM log-odds is a free ensemble: no more training,
N times the prediction cost. This bench scores the best epoch alone and the
average of the N best on the run's own validation split (to see whether
validation would choose it) and on the test split, the LSTM alone, in the
arithmetic the pipeline's final scores use. One JSON line per run directory.

    .venv/bin/python bench/epoch_ensemble.py --data-dir data/imdb --epochs 3 RUN_DIR [RUN_DIR ...]
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.average_checkpoints import epoch_checkpoints, run_loaders  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from src.data.preprocessing import TextPreprocessor  # noqa: E402
from src.inference.metrics import log_loss  # noqa: E402
from src.inference.predictor import SentimentPredictor, prediction_dtype  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training.monitor import MONITOR_MODES  # noqa: E402
from src.utils.checkpoint_io import load_state  # noqa: E402

CPU = torch.device("cpu")


def best_epochs(run_dir: Path, monitor: str, count: int) -> List[Dict[str, Any]]:
    """The registry's ``count`` best epochs by ``monitor`` whose checkpoints are still there, best first."""
    entries = json.loads((run_dir / "checkpoint_registry.json").read_text())["entries"]
    kept = [entry for entry in entries if (run_dir / entry["file"]).is_file()]
    ranked = sorted(kept, key=lambda entry: entry[monitor], reverse=MONITOR_MODES[monitor] == "max")
    if len(ranked) < count:
        raise SystemExit(f"{run_dir} keeps {len(ranked)} epoch checkpoints; --epochs {count} needs as many")
    return ranked[:count]


def scored(log_odds: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    return {"accuracy": round(float(np.mean((log_odds > 0) == (labels == 1))), 5),
            "loss": round(log_loss(labels, log_odds), 4)}


def ensemble(run_dir: Path, count: int, data_dir: Optional[str]) -> Dict[str, Any]:
    last = load_state(epoch_checkpoints(run_dir)[-1])
    settings, preprocessor = last["run_config"], TextPreprocessor.from_dict(last["preprocessor"])
    _, val_loader, test_loader = run_loaders(settings, preprocessor, data_dir)
    model = LSTMClassifier.from_config(last["model_config"])
    lstm = SentimentPredictor(model, preprocessor, device=CPU, dtype=prediction_dtype("auto", CPU))
    splits = {"val": val_loader.dataset, "test": test_loader.dataset}
    labels = {name: np.asarray(split.labels) for name, split in splits.items()}
    chosen = best_epochs(run_dir, settings["monitor"], count)
    log_odds: Dict[str, List[np.ndarray]] = {name: [] for name in splits}
    for entry in chosen:
        model.load_state_dict(load_state(run_dir / entry["file"])["model_state"])
        for name in splits:
            log_odds[name].append(lstm.lstm_log_odds(splits[name].texts))
    result: Dict[str, Any] = {"run_dir": run_dir.name, "seed": settings["seed"], "monitor": settings["monitor"],
                              "epochs": [entry["epoch"] for entry in chosen]}
    for name in splits:
        result[f"best_{name}"] = scored(log_odds[name][0], labels[name])
        result[f"ensemble_{name}"] = scored(np.mean(log_odds[name], axis=0), labels[name])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished runs' --checkpoint-dir")
    parser.add_argument("--epochs", type=int, default=3, help="best epochs averaged (at most --save-best-n)")
    parser.add_argument("--data-dir", default=None, help="the runs' --data-dir, if it has moved since")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        print(json.dumps({**ensemble(run_dir, args.epochs, args.data_dir), **cpu_facts()}), flush=True)


if __name__ == "__main__":
    main()

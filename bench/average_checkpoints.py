"""Weight averaging of a finished run's last epochs, against each of those epochs alone.

Stochastic weight averaging (Izmailov et al. 2018) averages the weights a run
passes through at a constant or cyclic learning rate; the average often sits in
a flatter, better place than any one of them. This bench measures that on a run
directory's kept epoch checkpoints (the last ``--max-checkpoints``, 5 by default): each
epoch alone and the average of its last 2, 3, ... epochs, each scored on the
run's own validation split and on the test split (the loss without class
weights). Choose on validation; the test column is there to see whether that
choice carries over. A run keeps its last epochs and its best ones, so an
average that reaches back past the last few may skip epochs (each line names
the epochs it averages). One JSON line per candidate, then a summary line with
the candidates validation picks.

Validation loss punishes the overconfidence that later epochs and their averages
grow, which accuracy does not; so each line also gives the validation loss after
temperature scaling (the one temperature fitted on validation, as a finished run
calibrates its final model), a rule of "better" that scores how well a
candidate ranks the reviews rather than how confident it is.

    .venv/bin/python bench/average_checkpoints.py --run-dir checkpoints --data-dir data/imdb
"""

import argparse
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_facts  # noqa: E402
from src.data.loaders import DataSource, create_data_loaders  # noqa: E402
from src.data.preprocessing import TextPreprocessor  # noqa: E402
from src.inference.metrics import fit_temperature, log_loss  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training.averaging import average_weights  # noqa: E402
from src.utils.checkpoint_io import load_state  # noqa: E402


def epoch_checkpoints(run_dir: Path) -> List[Path]:
    """The run's epoch checkpoints, oldest first."""
    found = [(int(match.group(1)), path) for path in run_dir.glob("checkpoint_epoch_*.pt")
             if (match := re.fullmatch(r"checkpoint_epoch_(\d+)\.pt", path.name))]
    return [path for _, path in sorted(found)]


def run_loaders(run_config: Dict[str, Any], preprocessor: TextPreprocessor, data_dir: Optional[str]):
    """The run's own training, validation and test loaders (its data settings, split and vocabulary),
    checked against the fingerprint of its training and validation reviews."""
    settings = {**run_config, **({"data_dir": data_dir} if data_dir else {})}
    train, val, test, _ = create_data_loaders(
        DataSource.from_config(SimpleNamespace(**settings)), batch_size=settings["batch_size"],
        preprocessor=preprocessor, validation_split=settings["validation_split"], seed=settings["seed"],
        max_train_samples=settings["max_train_samples"], max_test_samples=settings["max_test_samples"])
    saved = run_config.get("data_fingerprint")
    if saved is not None and saved != {"train": train.dataset.fingerprint(), "validation": val.dataset.fingerprint()}:
        raise SystemExit("these are not the run's training and validation reviews: pass its --data-dir")
    return train, val, test


@torch.no_grad()
def scores_and_labels(model: LSTMClassifier, loader) -> Tuple[np.ndarray, np.ndarray]:
    """The model's scores (log-odds [N] or logits [N, C]) and the labels of ``loader``'s reviews, dropout off."""
    model.eval()
    scores, labels = [], []
    for ids, lengths, batch_labels in loader:
        scores.append(model(ids, lengths).float())
        labels.append(batch_labels)
    return torch.cat(scores).numpy().astype(np.float64), torch.cat(labels).numpy().astype(np.int64)


def scored(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Loss, loss after temperature scaling (fitted on these reviews) and accuracy."""
    predicted = scores > 0 if scores.ndim == 1 else scores.argmax(axis=1)
    temperature = fit_temperature(labels, scores)
    return {"loss": log_loss(labels, scores), "calibrated_loss": log_loss(labels, scores / temperature),
            "temperature": temperature, "accuracy": float(np.mean(predicted == labels))}


def candidates(states: List[Dict[str, Any]]) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """Each epoch alone, then the averages of the last 2, 3, ... epochs kept."""
    epochs = [state["epoch"] for state in states]
    alone = [(f"epoch {epoch}", [state]) for epoch, state in zip(epochs, states)]
    return alone + [(f"average of epochs {', '.join(map(str, epochs[-k:]))}", states[-k:])
                    for k in range(2, len(states) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished run's --checkpoint-dir")
    parser.add_argument("--data-dir", default=None, help="the run's --data-dir, if it has moved since")
    parser.add_argument("--last", type=int, default=None, help="only the last N epoch checkpoints (default: all)")
    args = parser.parse_args()
    paths = epoch_checkpoints(Path(args.run_dir))[-args.last if args.last else 0:]
    if len(paths) < 2:
        parser.error(f"{args.run_dir} holds {len(paths)} epoch checkpoints; averaging needs two or more")
    states = [load_state(path) for path in paths]
    _, val_loader, test_loader = run_loaders(
        states[-1]["run_config"], TextPreprocessor.from_dict(states[-1]["preprocessor"]), args.data_dir)
    model = LSTMClassifier.from_config(states[-1]["model_config"])
    rows = []
    for name, members in candidates(states):
        model.load_state_dict(average_weights([member["model_state"] for member in members]))
        validation, test = scored(*scores_and_labels(model, val_loader)), scored(*scores_and_labels(model, test_loader))
        rows.append({"candidate": name, "val_loss": round(validation["loss"], 4),
                     "val_loss_calibrated": round(validation["calibrated_loss"], 4),
                     "val_temperature": round(validation["temperature"], 3),
                     "val_accuracy": round(validation["accuracy"], 4), "test_accuracy": round(test["accuracy"], 5)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"run_dir": args.run_dir, "picked_by_val_loss": min(rows, key=lambda row: row["val_loss"]),
                      "picked_by_calibrated_val_loss": min(rows, key=lambda row: row["val_loss_calibrated"]),
                      "picked_by_val_accuracy": max(rows, key=lambda row: row["val_accuracy"]), **cpu_facts()}))


if __name__ == "__main__":
    main()

"""Classify a few reviews with a trained model directory.

    .venv/bin/python examples/predict_from_python.py --model-dir runs/quick/model "A joy to watch." "Dreadful."
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import collate_batch, truncate_ids  # noqa: E402
from src.models.model_dir import load_model_directory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Predict the sentiment of reviews.")
    parser.add_argument("--model-dir", default="runs/quick/model")
    parser.add_argument("reviews", nargs="+")
    args = parser.parse_args()

    model, preprocessor = load_model_directory(args.model_dir)
    items = [(truncate_ids(ids, 400), 0) for ids in preprocessor.encode_batch(args.reviews)]
    token_ids, lengths, _ = collate_batch(items)
    with torch.no_grad():
        probabilities = torch.sigmoid(model(token_ids, lengths))
    for review, probability in zip(args.reviews, probabilities.tolist()):
        label = "positive" if probability >= 0.5 else "negative"
        print(f"{label:8} {probability:.3f}  {review}")


if __name__ == "__main__":
    main()

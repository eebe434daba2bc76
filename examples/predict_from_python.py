"""Classify a few reviews with a trained model directory.

    .venv/bin/python examples/predict_from_python.py --model-dir runs/quick/model "A joy to watch." "Dreadful."
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.exceptions import PipelineError  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Predict the sentiment of reviews.")
    parser.add_argument("--model-dir", default="runs/quick/model")
    parser.add_argument("reviews", nargs="+")
    args = parser.parse_args()

    predictor = SentimentPredictor.from_pretrained(args.model_dir)
    for review, result in zip(args.reviews, predictor.predict_batch(args.reviews)):
        print(f"{result['label']:8} {result['probability']:.3f}  {review}")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:  # the project's errors are one line that says what to do
        sys.exit(f"error: {err}")

"""Evaluate a model directory on the test split, with plots, from Python.

    .venv/bin/python examples/evaluate_model.py --model-dir runs/quick/model --data-dir data/imdb

The command line does the same: python -m src.inference.evaluate --model-dir ... --data-dir ...
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import load_imdb  # noqa: E402
from src.exceptions import PipelineError  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.inference.evaluate import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate a trained model.")
    parser.add_argument("--model-dir", default="runs/quick/model")
    parser.add_argument("--data-dir", default="data/imdb")
    parser.add_argument("--output-dir", default="runs/quick/evaluation")
    parser.add_argument("--max-samples", type=int, default=2000)
    args = parser.parse_args()

    test = load_imdb(args.data_dir, "test")
    step = max(1, len(test.texts) // args.max_samples)
    sample = test.select(range(0, len(test.texts), step))
    metrics = evaluate(SentimentPredictor.from_pretrained(args.model_dir), sample.texts, sample.labels,
                       Path(args.output_dir))
    print(f"accuracy {metrics['accuracy']:.3f}, F1 {metrics['f1']:.3f}, ROC-AUC {metrics['roc_auc']:.3f} "
          f"on {metrics['n_examples']} reviews")
    for bucket, values in metrics["accuracy_by_length"].items():
        print(f"  {bucket:6}: {values['n_examples']} reviews, accuracy {values['accuracy']}")
    print(f"plots in {args.output_dir}")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:  # the project's errors are one line that says what to do
        sys.exit(f"error: {err}")

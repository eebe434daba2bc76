"""Evaluate a model directory on a labelled split and draw the results.

    python -m src.inference.evaluate --model-dir models --data-dir data/imdb [--split test]

Writes ``evaluation.json`` (accuracy, precision, recall, F1, ROC-AUC, loss,
confusion matrix, number of examples, accuracy by review length) and the plots
``confusion_matrix.png``, ``roc_curve.png`` and ``accuracy_by_length.png`` into
the model directory, or into ``--output-dir``. Several ``--model-dir`` evaluate
the average of their models' probabilities (an ensemble); ``--output-dir`` is
then required.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from src.data.imdb import load_imdb
from src.data.loaders import stratified_sample
from src.exceptions import PipelineError
from src.utils.cli import OneLineParser, fail
from src.inference.metrics import accuracy_by_bucket, binary_metrics, length_buckets, roc_curve
from src.inference.predictor import DEFAULT_BATCH_SIZE, RUNTIMES, Predictor, load_predictor
from src.training.run_control import ensure_writable
from src.utils.io import atomic_write_json
from src.utils.plots import plot_accuracy_by_length, plot_confusion_matrix, plot_roc_curve


def evaluate(predictor: Predictor, texts: List[str], labels: List[int], output_dir: Path,
             batch_size: int = DEFAULT_BATCH_SIZE) -> Dict[str, Any]:
    """Metrics of ``predictor`` on these reviews; writes evaluation.json and the plots to ``output_dir``."""
    probabilities = predictor.probabilities(texts, batch_size=batch_size)
    labels_array = np.asarray(labels)
    metrics = binary_metrics(labels_array, probabilities)
    token_counts = np.array([len(ids) for ids in predictor.preprocessor.encode_batch(texts)])
    buckets = length_buckets(token_counts, predictor.max_length)
    metrics["accuracy_by_length"] = accuracy_by_bucket(labels_array, probabilities, buckets)
    metrics["length_buckets"] = {"short": f"<= {predictor.max_length // 2} tokens",
                                 "medium": f"<= {predictor.max_length} tokens",
                                 "long": f"> {predictor.max_length} tokens (truncated)"}
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "evaluation.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], output_dir / "confusion_matrix.png")
    if metrics["roc_auc"] is not None:
        fpr, tpr = roc_curve(labels_array, probabilities)
        plot_roc_curve(fpr, tpr, metrics["roc_auc"], output_dir / "roc_curve.png")
    plot_accuracy_by_length(metrics["accuracy_by_length"], output_dir / "accuracy_by_length.png")
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    parser = OneLineParser(prog="python -m src.inference.evaluate", description="Evaluate a trained model.")
    parser.add_argument("--model-dir", required=True, action="append",
                        help="model directory written by training; repeat it to evaluate the average of several")
    parser.add_argument("--data-dir", required=True, help="IMDB folder/archive or train.csv/test.csv folder")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--output-dir", help="where to write (default: the model directory)")
    parser.add_argument("--max-samples", type=int, help="evaluate a stratified sample of N reviews")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--device", default=None)
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="auto: ONNX Runtime on a CPU when the model directory holds model.onnx, else PyTorch")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.max_samples is not None and args.max_samples < 2):
        parser.error("--batch-size must be at least 1 and --max-samples at least 2")
    if len(args.model_dir) > 1 and not args.output_dir:
        parser.error("several --model-dir need --output-dir for the ensemble's evaluation.json and plots")
    output_dir = Path(args.output_dir or args.model_dir[0])
    try:
        ensure_writable(output_dir, "evaluation.json and plots", "--output-dir")
        predictor = load_predictor(args.model_dir, device=args.device, runtime=args.runtime)
        reviews = load_imdb(args.data_dir, args.split)
        if args.max_samples is not None and args.max_samples < len(reviews.texts):
            reviews = reviews.select(stratified_sample(reviews.labels, args.max_samples, np.random.default_rng(0)))
        metrics = evaluate(predictor, reviews.texts, reviews.labels, output_dir, args.batch_size)
    except (PipelineError, ValueError) as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"could not write the evaluation to {output_dir} ({err.strerror or err}); files that were there "
                    "are unchanged: free some space or choose another --output-dir")
    summary = {k: metrics[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "loss", "n_examples")}
    print(json.dumps(summary, indent=2))
    print(f"evaluation.json and plots written to {output_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

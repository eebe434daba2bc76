"""Evaluate a model directory on labelled texts and draw the results.

    python -m src.inference.evaluate --model-dir models --data-dir data/imdb [--split test]
    python -m src.inference.evaluate --model-dir models --file tickets-test.parquet --label-column topic

Writes ``evaluation.json`` (accuracy, macro-F1, balanced accuracy, ROC-AUC, loss, the
confusion matrix, per-class precision, recall and F1, accuracy by text length, and of two
classes the positive class's precision, recall and F1, the expected calibration error
``ece`` over 15 confidence bins) and the plots ``confusion_matrix.png``, ``roc_curve.png``
(one curve per class of more than two), ``accuracy_by_length.png`` and
``reliability_diagram.png`` into the model directory, or into ``--output-dir``. Labels are
read as the model's class names. Several ``--model-dir`` evaluate the average of their
models' probabilities (an ensemble); ``--output-dir`` is then required.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from src.data.imdb import ReviewData, load_imdb
from src.data.labels import is_sentiment
from src.data.loaders import encode_labels, stratified_sample
from src.data.tables import SPLIT_FILE_NAMES, find_split_file, read_table
from src.exceptions import DataError, PipelineError
from src.utils.cli import OneLineParser, discard_standard_output, fail, output_closed
from src.inference.metrics import (accuracy_by_bucket, calibration, length_buckets, metrics_for, predicted_classes,
                                   roc_curves)
from src.models.model_dir import trained_column
from src.inference.predictor import (DEFAULT_BATCH_SIZE, Predictor, add_lstm_only_argument, add_runtime_arguments,
                                      load_predictor)
from src.training.run_control import ensure_writable
from src.utils.io import atomic_write_json, folders_removed_on_failure, staged_files
from src.utils.plots import plot_accuracy_by_length, plot_confusion_matrix, plot_reliability_diagram, plot_roc_curves

SUMMARY_KEYS = ("accuracy", "macro_f1", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "loss", "ece",
                "n_examples")


def evaluate(predictor: Predictor, texts: List[str], labels: List[int], output_dir: Path,
             batch_size: int = DEFAULT_BATCH_SIZE, lstm_only: bool = False) -> Dict[str, Any]:
    """Metrics of ``predictor`` on these texts (labels: indices into its class names); writes
    evaluation.json and the plots to ``output_dir``. ``lstm_only`` records that the predictor was loaded
    without its n-gram part, so that file says which model it scored."""
    probabilities = predictor.class_probabilities(texts, batch_size=batch_size)
    labels_array, names = np.asarray(labels), predictor.class_names
    metrics = metrics_for(labels_array, probabilities, names)
    metrics["lstm_only"] = lstm_only
    token_counts = np.array([len(ids) for ids in predictor.preprocessor.encode_batch(texts)])
    buckets = length_buckets(token_counts, predictor.max_length)
    metrics["accuracy_by_length"] = accuracy_by_bucket(labels_array, predicted_classes(probabilities), buckets)
    metrics["calibration"] = calibration(labels_array, probabilities)
    metrics["ece"] = metrics["calibration"]["ece"]
    metrics["length_buckets"] = {"short": f"<= {predictor.max_length // 2} tokens",
                                 "medium": f"<= {predictor.max_length} tokens",
                                 "long": f"> {predictor.max_length} tokens (truncated)"}
    with staged_files(output_dir) as staging:  # the old evaluation stays whole until the new one is
        atomic_write_json(staging / "evaluation.json", metrics)
        plot_confusion_matrix(metrics["confusion_matrix"], names, staging / "confusion_matrix.png")
        if metrics["roc_auc"] is not None:
            plot_roc_curves(roc_curves(labels_array, probabilities, names), staging / "roc_curve.png")
        plot_accuracy_by_length(metrics["accuracy_by_length"], staging / "accuracy_by_length.png")
        plot_reliability_diagram(metrics["calibration"], staging / "reliability_diagram.png")
    if metrics["roc_auc"] is None:  # an earlier evaluation's curve would not belong to this one
        (output_dir / "roc_curve.png").unlink(missing_ok=True)
    return metrics


def load_labelled(args, class_names) -> ReviewData:
    """The texts to evaluate on, their labels read as ``class_names``: ``--file``, or ``--split`` of
    ``--data-dir`` (IMDB, or your own files)."""
    if args.file:
        path = Path(args.file)
    else:
        root = Path(args.data_dir)
        if not root.exists():
            raise DataError(f"--data-dir {root} does not exist; give the folder of the data, or --file")
        files = {split: find_split_file(root, split) for split in SPLIT_FILE_NAMES} if root.is_dir() else {}
        if not any(files.values()):  # IMDB: 0 negative, 1 positive
            if not is_sentiment(class_names):
                raise DataError(f"the model's classes ({', '.join(class_names)}) are not IMDB's negative and "
                                f"positive, and {root} holds no train, validation or test file of its own data; "
                                "evaluate it on its own data with --file")
            if args.split == "validation":
                raise DataError("IMDB has no validation split; use --split train or test")
            return load_imdb(args.data_dir, args.split)._replace(class_names=tuple(class_names))
        path = files[args.split]
        if path is None:
            raise DataError(f"{root} has no {args.split} file; name one with --file")
    text_column = args.text_column or trained_column(args.model_dir[0], "text_column")
    label_column = args.label_column or trained_column(args.model_dir[0], "label_column")
    return encode_labels(read_table(path, text_column, label_column), class_names, path)


def main(argv: Optional[List[str]] = None, prog: str = "python -m src.inference.evaluate") -> int:
    parser = OneLineParser(prog=prog, description="Evaluate a trained model.")
    parser.add_argument("--model-dir", required=True, action="append",
                        help="model directory written by training; repeat it to evaluate the average of several")
    parser.add_argument("--data-dir", help="IMDB folder or archive, or a folder of your own train, validation and "
                                               "test files (.csv, .tsv, .jsonl or .parquet)")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"],
                        help="which split of --data-dir (default: test; validation needs a validation file)")
    parser.add_argument("--file", help="a file of your own labelled texts to evaluate on, instead of --data-dir")
    parser.add_argument("--text-column", help="column of the texts in your files (default: the model's training "
                                              "data's)")
    parser.add_argument("--label-column", help="column of the labels (default: the model's training data's)")
    parser.add_argument("--output-dir", help="where to write (default: the model directory)")
    parser.add_argument("--max-samples", type=int, help="evaluate a stratified sample of N reviews")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"texts per forward pass (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: auto)")
    add_runtime_arguments(parser)
    add_lstm_only_argument(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.max_samples is not None and args.max_samples < 2):
        parser.error("--batch-size must be at least 1 and --max-samples at least 2")
    if bool(args.data_dir) == bool(args.file):
        parser.error("give --data-dir (with --split) or --file (one of them)")
    if len(args.model_dir) > 1 and not args.output_dir:
        parser.error("several --model-dir need --output-dir for the ensemble's evaluation.json and plots")
    output_dir = Path(args.output_dir or args.model_dir[0])
    try:
        with folders_removed_on_failure(output_dir):  # a failed evaluation leaves no folder it made
            ensure_writable(output_dir, "evaluation.json and plots", "--output-dir")
            predictor = load_predictor(args.model_dir, device=args.device, runtime=args.runtime,
                                       precision=args.precision, lstm_only=args.lstm_only)
            reviews = load_labelled(args, predictor.class_names)
            if args.max_samples is not None and args.max_samples < len(reviews.texts):
                reviews = reviews.select(stratified_sample(reviews.labels, args.max_samples,
                                                           np.random.default_rng(0)))
            metrics = evaluate(predictor, reviews.texts, reviews.labels, output_dir, args.batch_size,
                               lstm_only=args.lstm_only)
    except (PipelineError, ValueError) as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"could not write the evaluation to {output_dir} ({err.strerror or err}); files that were there "
                    "are unchanged: free some space or choose another --output-dir")
    summary = {key: metrics[key] for key in SUMMARY_KEYS if key in metrics}
    try:
        print(json.dumps(summary, indent=2), flush=True)
    except BrokenPipeError:  # the reader stopped reading (`| head`); the files are written
        return output_closed()
    except OSError as err:
        discard_standard_output()
        return fail(f"could not write the summary to standard output ({err.strerror or err}); evaluation.json "
                    f"in {output_dir} holds it")
    print(f"evaluation.json and plots written to {output_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

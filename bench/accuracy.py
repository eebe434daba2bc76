"""Test accuracy of a full training run against the TF-IDF + logistic-regression baseline.

Trains a preset configuration (the defaults, or a file of ``configs/``) with the
command line's own code path on the full IMDB training split (validation carved
out of it), picks the best epoch on validation, evaluates once on the
25,000-review test split, and in the same run fits the baseline practitioners
use instead (TF-IDF on word 1-2-grams + logistic regression, scikit-learn) on
the same training reviews. Last line: one JSON object, where ``test_accuracy``
is the saved model's (the blend, for a preset with ``ngram_blend``),
``lstm_test_accuracy`` the LSTM's alone and ``ngram_test_accuracy`` the n-gram
model's alone. ``--task ratings`` trains on a four-class task made of the same
reviews by their star ratings (1-2 awful, 3-4 poor, 7-8 good, 9-10 great), written as
CSV files into the work folder and read as a user's own data; accuracy and macro-F1
are then given for the LSTM and the baseline.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/accuracy.py --data-dir data/imdb --glove-zip data/glove/glove.6B.zip --preset recommended
    .venv/bin/python bench/accuracy.py --task ratings --preset fast --ngram-blend
"""

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_facts  # noqa: E402
from src.config import TrainConfig, check_setting, parse_glove_dim  # noqa: E402
from src.data import ReviewData, load_imdb_splits  # noqa: E402
from src.data.loaders import DataSource, split_reviews  # noqa: E402
from src.inference.metrics import classification_metrics  # noqa: E402
from src.training.pipeline import run_training  # noqa: E402
from src.training.train_model import read_config_file  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = {"default": {}, **{path.stem: read_config_file(str(path)) for path in sorted(CONFIGS.glob("*.yaml"))}}


RATING_CLASSES = {1: "awful", 2: "awful", 3: "poor", 4: "poor", 7: "good", 8: "good", 9: "great", 10: "great"}


def baseline_metrics(train: ReviewData, test: ReviewData) -> Dict[str, float]:
    """TF-IDF on word 1-2-grams + logistic regression, fitted on ``train``: accuracy and macro-F1 on ``test``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    features = vectorizer.fit_transform(train.texts)
    classifier = LogisticRegression(C=10.0, max_iter=2000).fit(features, train.labels)
    probabilities = classifier.predict_proba(vectorizer.transform(test.texts))
    return _scores(classification_metrics(np.array(test.labels), probabilities, test.class_names))


def _scores(metrics: Dict[str, Any]) -> Dict[str, float]:
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4)}


def write_rating_task(data_dir: str, folder: Path) -> Path:
    """IMDB's reviews as a four-class task by their ratings (``RATING_CLASSES``): train.csv and test.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, reviews in load_imdb_splits(data_dir).items():
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(reviews.texts, (RATING_CLASSES[r] for r in reviews.ratings)))
    return folder


def parse_settings(pairs: List[str]) -> Dict[str, Any]:
    """``["scheduler=slanted_triangular", "epochs=5"]`` -> checked training settings."""
    settings = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"--set takes SETTING=VALUE, got {pair!r}")
        TrainConfig.check_names([name], "--set")
        settings[name] = check_setting(name, value)
    return settings


def training_settings(args: argparse.Namespace, work: Path, chosen: Dict[str, Any]) -> Dict[str, Any]:
    """The preset's settings, with the GloVe archive linked into ``work``; ``--set``'s come last and win (over
    ``--epochs`` and ``--glove-dim`` too)."""
    settings = {"epochs": args.epochs, **PRESETS[args.preset], **({"ngram_blend": True} if args.ngram_blend else {})}
    if settings.get("use_glove"):
        cache = work / "glove"
        cache.mkdir(parents=True, exist_ok=True)
        link = cache / "glove.6B.zip"
        if not link.exists():
            link.symlink_to(Path(args.glove_zip).resolve())
        settings.update(glove_dim=args.glove_dim, embedding_dim=parse_glove_dim(args.glove_dim),
                        glove_cache_dir=str(cache))
    return {**settings, **chosen}


def peak_rss_mb() -> int:
    """The largest resident memory of this process so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="recommended")
    parser.add_argument("--task", choices=("imdb", "ratings"), default="imdb",
                        help="imdb: positive or negative; ratings: four classes by the reviews' star ratings")
    parser.add_argument("--glove-zip", default="../shared/data/glove/glove.6B.zip",
                        help="glove.6B.zip to read the vectors from (its 50d member is used)")
    parser.add_argument("--glove-dim", default="50d")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--ngram-blend", action="store_true", help="add the n-gram blend to the preset's settings")
    parser.add_argument("--max-train-samples", type=int, default=None, help="for a quick check of the script")
    parser.add_argument("--work-dir", default=None, help="where checkpoints go (default: a temporary folder)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SETTING=VALUE",
                        help="training settings on top of the preset and the flags above, e.g. "
                        "scheduler=slanted_triangular max_minutes=55")
    args = parser.parse_args()
    try:
        args.set = parse_settings(args.set)
    except ValueError as err:
        parser.error(str(err))
    return args


def main() -> None:
    args = _arguments()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="accuracy-"))
    data_dir = args.data_dir if args.task == "imdb" else str(write_rating_task(args.data_dir, work / "ratings"))
    cfg = TrainConfig(**{"data_dir": data_dir, "output_dir": str(work / "model"), "checkpoint_dir": str(work / "run"),
                         "max_train_samples": args.max_train_samples, "quiet": True,
                         **training_settings(args, work, args.set)})
    started = time.perf_counter()
    metrics = run_training(cfg)
    lstm_seconds = time.perf_counter() - started
    run_peak_mb = peak_rss_mb()
    train, _, test = split_reviews(DataSource.from_config(cfg), cfg.validation_split, cfg.seed, args.max_train_samples)
    baseline = baseline_metrics(train, test)
    history = metrics["history"]
    lstm_only = metrics.get("test_lstm_only", metrics["test"])  # the same unless the n-gram blend is on
    ngram_only = metrics.get("ngram_blend", {}).get("ngram_only_test_accuracy")
    result = {
        "test_accuracy": round(metrics["test"]["accuracy"], 4), "lstm_test_accuracy": round(lstm_only["accuracy"], 4),
        "ngram_test_accuracy": None if ngram_only is None else round(ngram_only, 4),
        "baseline_test_accuracy": baseline["accuracy"], "test_macro_f1": round(metrics["test"]["macro_f1"], 4),
        "lstm_test_macro_f1": round(lstm_only["macro_f1"], 4),
        "baseline_test_macro_f1": baseline["macro_f1"], "task": args.task, "classes": list(test.class_names),
        "epochs": history["epochs_completed"], "best_epoch": history["best_epoch"],
        "epoch_seconds": [round(s, 1) for s in history["epoch_times"]],
        "total_seconds": round(lstm_seconds), "time_limit_reached": history["time_limit_reached"],
        "peak_rss_mb": run_peak_mb, "peak_rss_with_baseline_mb": peak_rss_mb(),
        "preset": args.preset, "config": asdict(cfg), **cpu_facts(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

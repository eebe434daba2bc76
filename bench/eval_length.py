"""Test accuracy of finished models when evaluation reads reviews cut at other lengths.

Training cuts each review to ``--max-length`` tokens (400 by default) to keep its
steps cheap; validation, testing and prediction read ``--eval-max-length`` tokens
(by default twice as many). This bench scores trained models on the 25,000 IMDB
test reviews with each length of ``--lengths`` (default: the model's training
length, twice it, and 2,500, more than almost every review holds): the LSTM alone
and, for a blended model, the blend (its weights as fitted; a model trained
before ``--eval-max-length`` existed fitted them at its training length). Each
argument is a model directory or a training checkpoint, as in
``bench/short_reviews.py``. One JSON line per model and length, then one per
model with the gains over the training length; accuracies do not depend on the CPU.

    .venv/bin/python bench/eval_length.py --data-dir data/imdb models
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.short_reviews import load_predictor  # noqa: E402
from src.data import load_imdb_splits  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402

LONGEST = 2500


def accuracies_at(predictor: SentimentPredictor, texts: Sequence[str], labels: np.ndarray, length: int,
                  ngram_log_odds: Optional[np.ndarray]) -> Dict[str, Optional[float]]:
    """The LSTM's and (given the n-gram model's log-odds, which read whole reviews) the blend's test accuracy
    reading ``length`` tokens a review. A blended model's label is positive where its blended log-odds are
    (its temperature only scales them)."""
    predictor.preprocessor.eval_max_length = length
    truth = labels == 1
    lstm = predictor.lstm_log_odds(texts)
    blend = (None if ngram_log_odds is None else
             float(np.mean((predictor.ngram_blend.blend.apply(lstm, ngram_log_odds) >= 0) == truth)))
    read = np.mean([len(ids) for ids in predictor.encode(texts)])
    return {"length": length, "lstm_alone": round(float(np.mean((lstm >= 0) == truth)), 5),
            "blend": None if blend is None else round(blend, 5), "mean_tokens_read": round(float(read), 1)}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model directories or training checkpoints (.pt)")
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--lengths", nargs="+", type=int, help="tokens read per review (default: the model's "
                        f"training length, twice it, and {LONGEST})")
    args = parser.parse_args(argv)
    test = load_imdb_splits(args.data_dir, splits=("test",))["test"]
    labels = np.asarray(test.labels)
    for path in args.models:
        predictor = load_predictor(path)
        trained = predictor.preprocessor.max_length
        ngrams = predictor.ngram_blend.model.log_odds(test.texts) if predictor.ngram_blend is not None else None
        rows = [dict(model=str(path), trained_length=trained,
                     **accuracies_at(predictor, test.texts, labels, length, ngrams))
                for length in args.lengths or (trained, 2 * trained, LONGEST)]
        for row in rows:
            print(json.dumps(row), flush=True)
        base = next((row for row in rows if row["length"] == trained), None)
        if base is not None:
            gains = {row["length"]: {part: round(100 * (row[part] - base[part]), 3) for part in ("lstm_alone", "blend")
                                     if base[part] is not None} for row in rows if row is not base}
            print(json.dumps({"model": str(path), "points_over_training_length": gains}), flush=True)


if __name__ == "__main__":
    main()

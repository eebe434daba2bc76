"""The blend's n-gram model fitted on the training reviews alone, or refitted on training and validation.

Training fits the blend's two weights on the validation reviews, scored by an
n-gram model of the training reviews, and then keeps an n-gram model refitted on
both (``pipeline._fit_ngram_blend``). For a trained model directory this bench
rebuilds the run's split from its ``config.json``, scores the validation and test
reviews with its LSTM once (as training does, in the precision ``auto`` picks),
runs the pipeline's own fit (weights, then the refit), fits the training-only
n-gram model again beside it, and reports the test accuracy of the n-gram model
and of the blend either way, with the same blend weights. Last line: one JSON
object.

    .venv/bin/python bench/ngram_refit.py --data-dir data/imdb --model-dir models
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.loaders import split_reviews  # noqa: E402
from src.data import ReviewData  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.models.ngram_model import NgramModel  # noqa: E402
from src.training.pipeline import _fit_ngram_blend  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402


def accuracy(scores: np.ndarray, labels: Sequence[int]) -> float:
    return float(np.mean((scores > 0) == (np.asarray(labels) == 1)))


def run_split_and_lstm_scores(data_dir: str, model_dir: str) -> Tuple[
        ReviewData, ReviewData, ReviewData, SentimentPredictor, np.ndarray, np.ndarray]:
    """A model directory's training, validation and test reviews (its run's split, from ``config.json``), its
    LSTM, and the LSTM's log-odds of the validation and test reviews."""
    settings = json.loads((Path(model_dir) / "config.json").read_text())
    train, val, test = split_reviews(data_dir, settings["validation_split"], settings["seed"],
                                     settings.get("max_train_samples"), settings.get("max_test_samples"))
    lstm = SentimentPredictor.from_pretrained(model_dir, runtime="torch")
    return train, val, test, lstm, lstm.lstm_log_odds(val.texts), lstm.lstm_log_odds(test.texts)


def compare(data_dir: str, model_dir: str) -> Dict[str, float]:
    train, val, test, lstm, val_lstm, test_lstm = run_split_and_lstm_scores(data_dir, model_dir)
    tokenizer = lstm.preprocessor.tokenizer
    kept, _, _ = _fit_ngram_blend(tokenizer, train, val, val_lstm)
    blend = kept.blend
    first = NgramModel.fit(train.texts, train.labels, tokenizer=tokenizer, classes=len(train.class_names))
    test_first, test_refitted = first.log_odds(test.texts), kept.model.log_odds(test.texts)
    return {"lstm_alone": accuracy(test_lstm, test.labels), "precision": lstm.precision,
            "ngrams_training_reviews": accuracy(test_first, test.labels),
            "ngrams_training_and_validation": accuracy(test_refitted, test.labels),
            "blend_training_reviews": accuracy(blend.apply(test_lstm, test_first), test.labels),
            "blend_training_and_validation": accuracy(blend.apply(test_lstm, test_refitted), test.labels),
            "training_reviews": len(train.texts), "validation_reviews": len(val.texts), "test_reviews": len(test.texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", required=True, help="a model directory trained with --ngram-blend")
    args = parser.parse_args()
    print(json.dumps({**compare(args.data_dir, args.model_dir), "model_dir": Path(args.model_dir).name,
                      **cpu_facts()}))


if __name__ == "__main__":
    main()

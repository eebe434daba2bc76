"""The accuracy issue's robustness proxy for finished models: test accuracy on the reviews cut short.

Short reviews from elsewhere are where the LSTM is the stronger part of a blend, so
no accuracy lever is kept that costs more than half a point here. Each argument is
a model directory (``--output-dir`` of a run: the LSTM alone and, for a blended
model, the blend) or a checkpoint of a run (``--checkpoint-dir``: the LSTM alone),
scored on the 25,000 IMDB test reviews cut to their first 30 words. One JSON line
each; accuracies do not depend on the CPU.

    .venv/bin/python bench/short_reviews.py --data-dir data/imdb models checkpoints/best_model.pt
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sweep import SHORT_REVIEW_WORDS, short_review_accuracy  # noqa: E402
from src.data import load_imdb_splits  # noqa: E402
from src.data.preprocessing import TextPreprocessor  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.utils.checkpoint_io import load_state  # noqa: E402


def load_predictor(path: Path) -> SentimentPredictor:
    """A model directory as prediction loads it, or a training checkpoint's LSTM with its preprocessor."""
    if path.is_dir():
        return SentimentPredictor.from_pretrained(path, device="cpu", runtime="torch")
    state = load_state(path)
    model = LSTMClassifier.from_config(state["model_config"])
    model.load_state_dict(state["model_state"])
    return SentimentPredictor(model, TextPreprocessor.from_dict(state["preprocessor"]), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model directories or training checkpoints (.pt)")
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    args = parser.parse_args()
    test = load_imdb_splits(args.data_dir, splits=("test",))["test"]
    for path in args.models:
        predictor = load_predictor(path)
        scores = short_review_accuracy(predictor, test.texts, test.labels)
        blended = predictor.ngram_blend is not None
        row = {"model": str(path), "words": SHORT_REVIEW_WORDS, "reviews": len(test.texts),
               "lstm_alone": scores["lstm_alone"] if blended else scores["model"],
               "blend": scores["model"] if blended else None}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

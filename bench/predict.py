"""Prediction speed: loading a model directory, batch throughput, single-review latency.

Uses the default model size (embedding 300, hidden 128, 2 layers, bidirectional)
with a vocabulary built on the IMDB training reviews; the weights are untrained,
which does not change the speed. Last line: one JSON object.

    .venv/bin/python bench/predict.py --data-dir data/imdb [--model-dir models]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import TextPreprocessor, load_imdb_splits  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.models.model_dir import save_model_directory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", help="a trained model directory (default: an untrained default model)")
    parser.add_argument("--reviews", type=int, default=5000, help="test reviews for the batch measurement")
    parser.add_argument("--single", type=int, default=200, help="reviews classified one at a time")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    splits = load_imdb_splits(args.data_dir)
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = tempfile.mkdtemp(prefix="predict-bench-")
        processor = TextPreprocessor().build_vocab(splits["train"].texts)
        save_model_directory(model_dir, LSTMClassifier(processor.vocab_size), processor, {"max_length": 400})
    started = time.perf_counter()
    predictor = SentimentPredictor.from_pretrained(model_dir, device="cpu")
    load_s = time.perf_counter() - started

    texts = splits["test"].texts[: args.reviews]
    predictor.predict_batch(texts[:64])  # warm-up
    started = time.perf_counter()
    predictor.predict_batch(texts, batch_size=args.batch_size)
    batch_s = time.perf_counter() - started
    latencies = []
    for text in splits["test"].texts[-args.single:]:
        started = time.perf_counter()
        predictor.predict(text)
        latencies.append(time.perf_counter() - started)
    result = {"load_s": round(load_s, 3), "batch_reviews_per_s": round(len(texts) / batch_s),
              "single_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
              "single_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
              "batch_size": args.batch_size, "threads": torch.get_num_threads()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

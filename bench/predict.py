"""Prediction speed: loading a model directory, batch throughput, single-review latency.

Measures two model sizes side by side in one process, the default (embedding 300,
hidden 128, 2 layers) and the "fast" preset of ``bench/accuracy.py`` (embedding 50,
hidden 64, 1 layer), both bidirectional, with a vocabulary built on the IMDB
training reviews. The weights are untrained, which does not change the speed;
``--model-dir`` measures a trained model directory instead, and for a model with
an n-gram blend also the same directory without it (the LSTM alone). Last line:
one JSON object.

    .venv/bin/python bench/predict.py --data-dir data/imdb [--model-dir models]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import TextPreprocessor, load_imdb_splits  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.models.model_dir import load_model_directory, save_model_directory  # noqa: E402
from src.models.ngram_model import NGRAM_FILE  # noqa: E402

SIZES = {"default": {"embedding_dim": 300, "hidden_dim": 128, "n_layers": 2},
         "fast": {"embedding_dim": 50, "hidden_dim": 64, "n_layers": 1}}


def measure(model_dir: str, texts: List[str], singles: List[str], batch_size: int) -> Dict[str, float]:
    """Load time, batch reviews/s and single-review latency percentiles of one model directory."""
    started = time.perf_counter()
    predictor = SentimentPredictor.from_pretrained(model_dir, device="cpu")
    load_s = time.perf_counter() - started
    predictor.predict_batch(texts[:64])  # warm-up
    started = time.perf_counter()
    predictor.predict_batch(texts, batch_size=batch_size)
    batch_s = time.perf_counter() - started
    latencies = []
    for text in singles:
        started = time.perf_counter()
        predictor.predict(text)
        latencies.append(time.perf_counter() - started)
    return {"load_s": round(load_s, 3), "batch_reviews_per_s": round(len(texts) / batch_s),
            "single_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "single_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", help="a trained model directory (default: untrained models of both sizes)")
    parser.add_argument("--reviews", type=int, default=5000, help="test reviews for the batch measurement")
    parser.add_argument("--single", type=int, default=200, help="reviews classified one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    splits = load_imdb_splits(args.data_dir)
    texts, singles = splits["test"].texts[: args.reviews], splits["test"].texts[-args.single:]
    model_dirs = {"model_dir": args.model_dir} if args.model_dir else {}
    if args.model_dir and (Path(args.model_dir) / NGRAM_FILE).is_file():  # the same model without its blend
        model_dirs["lstm_only"] = tempfile.mkdtemp(prefix="predict-bench-lstm-only-")
        save_model_directory(model_dirs["lstm_only"], *load_model_directory(args.model_dir))
    if not model_dirs:
        processor = TextPreprocessor().build_vocab(splits["train"].texts)
        for name, size in SIZES.items():
            model_dirs[name] = tempfile.mkdtemp(prefix=f"predict-bench-{name}-")
            save_model_directory(model_dirs[name], LSTMClassifier(processor.vocab_size, **size), processor)
    result = {name: measure(path, texts, singles, args.batch_size) for name, path in model_dirs.items()}
    if "fast" in result:
        result["fast_vs_default_batch_speed"] = round(
            result["fast"]["batch_reviews_per_s"] / result["default"]["batch_reviews_per_s"], 1)
    if "lstm_only" in result:
        result["blend_vs_lstm_only_batch_speed"] = round(
            result["model_dir"]["batch_reviews_per_s"] / result["lstm_only"]["batch_reviews_per_s"], 2)
    result.update(batch_size=args.batch_size, threads=torch.get_num_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The blend's n-gram model under other regularisation strengths, chosen on validation.

``NgramConfig.inverse_l2`` (C of the logistic regression, 0.1) sets how strongly
the n-gram weights shrink. This bench rebuilds a run's split from its model
directory's ``config.json``, turns the reviews into n-gram indicators once, fits
the n-gram model on the training reviews with each C, and reports each one's
accuracy alone on the validation and test reviews and, blended with the run's
LSTM (its validation and test scores computed once, the blend's weights fitted on
the validation reviews as training fits them), the blend's validation log-loss and
test accuracy. The setting to keep is the one validation picks, not test. Last
line: one JSON object.

    .venv/bin/python bench/ngram_settings.py --data-dir data/imdb --model-dir models [--inverse-l2 0.05 0.1 0.2 0.5]
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.inference.metrics import log_loss  # noqa: E402
from src.models.ngram_model import Blend, NgramConfig, _nbsvm, _vectorizer  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from bench.ngram_refit import accuracy, run_split_and_lstm_scores  # noqa: E402


def sweep(data_dir: str, model_dir: str, strengths: List[float]) -> List[Dict[str, float]]:
    train, val, test, lstm, val_lstm, test_lstm = run_split_and_lstm_scores(data_dir, model_dir)
    defaults = NgramConfig()
    vectorizer = _vectorizer(defaults.max_n, lstm.preprocessor.tokenizer, min_reviews=defaults.min_reviews)
    present = vectorizer.fit_transform(train.texts)
    val_present, test_present = vectorizer.transform(val.texts), vectorizer.transform(test.texts)
    rows = []
    for strength in strengths:
        started = time.perf_counter()
        weights, bias = _nbsvm(present, np.asarray(train.labels) == 1, strength)
        val_ngram, test_ngram = val_present @ weights + bias, test_present @ weights + bias
        blend = Blend.fit(val_lstm, val_ngram, val.labels)
        rows.append({"inverse_l2": strength, "fit_s": round(time.perf_counter() - started, 1),
                     "ngrams_validation": accuracy(val_ngram, val.labels), "ngrams_test": accuracy(test_ngram, test.labels),
                     "blend_validation_log_loss": log_loss(np.asarray(val.labels), blend.apply(val_lstm, val_ngram)),
                     "blend_test": accuracy(blend.apply(test_lstm, test_ngram), test.labels),
                     "lstm_weight": round(blend.lstm_weight, 3), "ngram_weight": round(blend.ngram_weight, 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", required=True, help="a trained model directory of two classes")
    parser.add_argument("--inverse-l2", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5])
    args = parser.parse_args()
    rows = sweep(args.data_dir, args.model_dir, args.inverse_l2)
    chosen = min(rows, key=lambda row: row["blend_validation_log_loss"])
    print(json.dumps({"rows": rows, "chosen_on_validation": chosen["inverse_l2"], "default": NgramConfig().inverse_l2,
                      "model_dir": Path(args.model_dir).name, **cpu_facts()}))


if __name__ == "__main__":
    main()

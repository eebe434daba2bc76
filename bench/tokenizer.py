"""What the "social" tokenizer changes on IMDB, against "words", on the same reviews.

For each tokenizer: how many training reviews hold a token that only "social" keeps
(emoticons, emoji, #hashtags, @mentions) and the most frequent of them, and the test
accuracy of the n-gram model of ``--ngram-blend`` fitted on the same training reviews
(the validation split carved out as training does). The n-gram model is deterministic,
so the difference is the tokenizer's, not a seed's. The LSTM's side (same seed, both
tokenizers) comes from ``bench/sweep.py bench/sweeps/tokenizer.json``.

    .venv/bin/python bench/tokenizer.py --data-dir data/imdb
"""

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_facts  # noqa: E402
from src.data.loaders import split_reviews  # noqa: E402
from src.data.preprocessing import TOKENIZERS, tokenize  # noqa: E402
from src.models.ngram_model import NgramModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    args = parser.parse_args()

    train, _, test = split_reviews(args.data_dir)
    words = TOKENIZERS["words"]
    extra = Counter()
    reviews_with_extra = 0
    for text in train.texts:
        found = [token for token in tokenize(text, tokenizer="social") if not words.fullmatch(token)]
        extra.update(found)
        reviews_with_extra += bool(found)
    result = {"training_reviews": len(train.texts), "reviews_with_social_tokens": reviews_with_extra,
              "distinct_social_tokens": len(extra), "most_common_social_tokens": extra.most_common(12)}
    for name in ("words", "social"):
        started = time.perf_counter()
        model = NgramModel.fit(train.texts, train.labels, tokenizer=name)
        accuracy = float(np.mean((model.log_odds(test.texts) >= 0) == np.array(test.labels)))
        result[f"ngram_test_accuracy_{name}"] = round(accuracy, 4)
        result[f"ngram_seconds_{name}"] = round(time.perf_counter() - started, 1)
    print(json.dumps({**result, **cpu_facts()}, ensure_ascii=False))


if __name__ == "__main__":
    main()

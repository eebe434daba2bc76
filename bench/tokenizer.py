"""What the "social" tokenizer changes on IMDB, against "words", and "unicode" against "social".

For each tokenizer: how many training reviews hold a token that only "social" keeps
(emoticons, emoji, #hashtags, @mentions) and the most frequent of them, and the test
accuracy of the n-gram model of ``--ngram-blend`` fitted on the same training reviews
(the validation split carved out as training does). The n-gram model is deterministic,
so the difference is the tokenizer's, not a seed's. The LSTM's side (same seed, both
tokenizers) comes from ``bench/sweep.py bench/sweeps/tokenizer.json``; ``--models``
then scores its model directories on the test reviews that hold such a token and on
the others, to tell an effect of the tokens from a different training run's noise.
For "unicode" (the default, "social" for any script): how many training reviews it
reads otherwise than "social", the tokens that differ most often, and the time both
take to tokenise the training reviews (alternating, median of three rounds).

    .venv/bin/python bench/tokenizer.py --data-dir data/imdb
    .venv/bin/python bench/tokenizer.py --data-dir data/imdb --skip-ngrams \
        --models sweep-results/runs/fast_words/model sweep-results/runs/fast_social/model
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
from src.inference import SentimentPredictor  # noqa: E402
from src.models.ngram_model import NgramModel  # noqa: E402


def social_tokens(text: str) -> list:
    """The tokens of ``text`` that only the "social" tokenizer keeps."""
    return [token for token in tokenize(text, tokenizer="social") if not TOKENIZERS["words"].fullmatch(token)]


def has_social_token(text: str) -> bool:
    return bool(social_tokens(text))


def unicode_against_social(texts: list) -> dict:
    """Where and how often "unicode" reads ``texts`` otherwise than "social", and both one's times."""
    changed = Counter()
    differing = 0
    for text in texts:
        unicode_tokens, social = tokenize(text, tokenizer="unicode"), tokenize(text, tokenizer="social")
        if unicode_tokens != social:
            differing += 1
            changed.update(set(unicode_tokens).symmetric_difference(social))
    seconds = {"social": [], "unicode": []}
    for round_ in range(3):
        for name in ("social", "unicode") if round_ % 2 == 0 else ("unicode", "social"):
            started = time.perf_counter()
            for text in texts:
                tokenize(text, tokenizer=name)
            seconds[name].append(time.perf_counter() - started)
    return {"reviews_read_otherwise_by_unicode": differing, "tokens_only_one_of_them_reads": changed.most_common(12),
            **{f"tokenize_seconds_{name}": round(float(np.median(times)), 2) for name, times in seconds.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--models", nargs="*", default=[], help="model directories to score on both subsets")
    parser.add_argument("--skip-ngrams", action="store_true", help="leave out the n-gram models")
    args = parser.parse_args()

    train, _, test = split_reviews(args.data_dir)
    extra = Counter()
    reviews_with_extra = 0
    for text in train.texts:
        found = social_tokens(text)
        extra.update(found)
        reviews_with_extra += bool(found)
    result = {"training_reviews": len(train.texts), "reviews_with_social_tokens": reviews_with_extra,
              "distinct_social_tokens": len(extra), "most_common_social_tokens": extra.most_common(12)}
    result.update(unicode_against_social(train.texts))
    social = np.array([has_social_token(text) for text in test.texts])
    labels = np.array(test.labels)
    result["test_reviews_with_social_tokens"] = int(social.sum())
    for model_dir in args.models:
        right = SentimentPredictor.from_pretrained(model_dir).class_probabilities(test.texts).argmax(axis=1) == labels
        result[model_dir] = {"with_social_tokens": round(float(right[social].mean()), 4),
                             "without": round(float(right[~social].mean()), 4), "all": round(float(right.mean()), 4)}
    for name in () if args.skip_ngrams else ("words", "social", "unicode"):
        started = time.perf_counter()
        model = NgramModel.fit(train.texts, train.labels, tokenizer=name)
        accuracy = float(np.mean((model.log_odds(test.texts) >= 0) == np.array(test.labels)))
        result[f"ngram_test_accuracy_{name}"] = round(accuracy, 4)
        result[f"ngram_seconds_{name}"] = round(time.perf_counter() - started, 1)
    print(json.dumps({**result, **cpu_facts()}, ensure_ascii=False))


if __name__ == "__main__":
    main()

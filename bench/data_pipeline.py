"""Data pipeline timings on the full IMDB training split.

Prints load time, tokenise + vocabulary time, encode time for the 25,000 training
reviews, and the padding fraction of batches with and without length bucketing.
The last line is one JSON object.

    .venv/bin/python bench/data_pipeline.py --data-dir data/imdb [--compare-tokenizers] [--tokenizer social]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import BucketBatchSampler, TextPreprocessor, load_imdb  # noqa: E402
from src.data import truncate_ids  # noqa: E402
from src.config import TOKENIZER_NAMES, default_of  # noqa: E402
from src.data.datasets import padding_fraction  # noqa: E402
from src.data.preprocessing import NORMALISING_TOKENIZERS  # noqa: E402


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def tokenizers_library_seconds(texts, vocab_size: int, normalise: bool) -> float:
    """The same job with the ``tokenizers`` library's WordLevel pipeline (reference), NFC-normalising the
    text first where ``normalise`` (as the "unicode" tokenizer does)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    started = time.perf_counter()
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()] if normalise
                                                else [normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\w'!?]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"[!?]"), behavior="isolated")])
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<unk>"])
    tokenizer.train_from_iterator(texts, trainer)
    [np.array(e.ids, dtype=np.int32) for e in tokenizer.encode_batch(texts)]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=400)
    parser.add_argument("--compare-tokenizers", action="store_true",
                        help="also time the `tokenizers` library on the same job (pip install tokenizers)")
    parser.add_argument("--tokenizer", default=default_of("tokenizer"), choices=TOKENIZER_NAMES)
    args = parser.parse_args()

    reviews, load_s = timed(load_imdb, args.data_dir, "train")
    processor = TextPreprocessor(max_vocab_size=25000, tokenizer=args.tokenizer)
    encoded, fit_encode_s = timed(processor.fit_encode, reviews.texts)  # what create_data_loaders does
    _, vocab_s = timed(processor.build_vocab, reviews.texts)
    _, encode_s = timed(processor.encode_batch, reviews.texts)
    lengths = np.array([len(truncate_ids(ids, args.max_length)) for ids in encoded])
    bucketed = list(BucketBatchSampler(lengths, args.batch_size, seed=0))
    order = np.random.default_rng(0).permutation(len(lengths))
    unbucketed = [order[i: i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    result = {
        "tokenizer": args.tokenizer, "reviews": len(reviews.texts), "tokens": int(sum(len(x) for x in encoded)),
        "load_s": round(load_s, 2), "tokenize_and_vocab_s": round(vocab_s, 2), "encode_s": round(encode_s, 2),
        "tokenize_vocab_encode_s": round(fit_encode_s, 2),
        "padding_fraction_bucketed": round(padding_fraction(lengths, bucketed), 4),
        "padding_fraction_random": round(padding_fraction(lengths, unbucketed), 4),
    }
    if args.compare_tokenizers:
        reference_s = tokenizers_library_seconds(reviews.texts, 25000, args.tokenizer in NORMALISING_TOKENIZERS)
        result["tokenizers_library_s"] = round(reference_s, 2)
        result["speedup_vs_tokenizers"] = round(reference_s / fit_encode_s, 2)
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""GloVe parsing speed against a plain ``line.split()`` loop, and the cached reload.

Extracts ``glove.6B.50d.txt`` from the zip into a scratch folder if needed, then
times, in one process: the reference loop (the usual tutorial code), our parser on
the whole file (its first call, so pandas' import counts), the same through the
loader, which also writes the binary cache, the loader keeping only an IMDB
vocabulary's words (what training does), and a second load of those vectors
(from the cache). Last line: JSON.

    .venv/bin/python bench/glove_load.py --glove-zip data/glove/glove.6B.zip --data-dir data/imdb
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import TextPreprocessor, load_imdb  # noqa: E402
from src.training.glove_loader import GloVeLoader, extract_member, parse_glove_file  # noqa: E402


def reference_loop(path: Path) -> dict:
    vectors = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip().split(" ")
            vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    return vectors


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glove-zip", default="../shared/data/glove/glove.6B.zip")
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="glove-bench-"))
    try:
        text_file = scratch / "glove.6B.50d.txt"
        extract_member(Path(args.glove_zip), "glove.6B.50d.txt", text_file)
        vocab = TextPreprocessor(max_vocab_size=25000).build_vocab(load_imdb(args.data_dir, "train").texts).itos
        wanted = set(vocab) | {w.lower() for w in vocab}
        reference, reference_s = timed(reference_loop, text_file)
        (_, parsed, _), parse_s = timed(parse_glove_file, text_file)
        (_, full), full_s = timed(GloVeLoader(scratch / "a").load_glove_matrix, text_file)
        (_, kept), vocab_s = timed(GloVeLoader(scratch / "b").load_glove_matrix, text_file, wanted)
        _, cached_s = timed(GloVeLoader(scratch / "b").load_glove_matrix, text_file, wanted)
        assert full.shape == (len(reference), 50) and np.array_equal(parsed, np.stack(list(reference.values())))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "words": len(reference), "reference_split_loop_s": round(reference_s, 2), "full_parse_s": round(parse_s, 2),
        "full_parse_speedup": round(reference_s / parse_s, 2), "full_load_with_cache_write_s": round(full_s, 2),
        "vocab_parse_s": round(vocab_s, 2),
        "vocab_words_kept": int(kept.shape[0]), "vocab_parse_speedup": round(reference_s / vocab_s, 2),
        "cached_reload_s": round(cached_s, 3),
    }
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Speed of the language-model pretraining step: its window, batch and sampled words.

Pretraining reads every word of the unlabeled and training reviews once per pass (about 9.5 minutes of
the recommended settings' hour on a 2-core CPU), so its words per second set how much of the hour is
left to train the classifier. This bench pretrains a fresh model of a configuration (the recommended
one by default; the embedding starts random, which costs the same as GloVe's) on real IMDB training
reviews with ``pretrain_language_model``, once per variant of ``PretrainConfig``'s ``window``,
``batch_size`` and ``negatives``, for about ``--words`` words each, the variants taking turns over the
rounds. The JSON line gives each variant's median words per second (both directions count a word
once), its range, and its ratio to the shipped settings; it names the CPU. Speed only: a variant that
is faster must still show in a full run that it pretrains as well.

    .venv/bin/python bench/lm_step.py --data-dir data/imdb [--words 400000 --rounds 3]
"""

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import TrainConfig  # noqa: E402
from src.data import TextPreprocessor, load_imdb  # noqa: E402
from src.models.lstm_model import MODEL_SETTINGS, LSTMClassifier, LSTMConfig  # noqa: E402
from src.training.lm_pretraining import PretrainConfig, pretrain_language_model  # noqa: E402
from src.training.train_model import read_config_file  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from bench.throughput import summary  # noqa: E402

SHIPPED = PretrainConfig()
VARIANTS = {
    "shipped": {},
    "batch_256": {"batch_size": 256},
    "window_50_batch_256": {"window": 50, "batch_size": 256},
    "window_200_batch_64": {"window": 200, "batch_size": 64},
    "negatives_256": {"negatives": 256},
    "negatives_1024": {"negatives": 1024},
}


def corpus_of(data_dir: str, reviews: int, cfg: TrainConfig) -> Tuple[List[np.ndarray], int]:
    """The first ``reviews`` IMDB training reviews in a fixed draw, encoded (uncut, as pretraining reads
    them), and the vocabulary's size."""
    texts = load_imdb(data_dir, "train")
    texts = texts.select(np.random.default_rng(0).permutation(len(texts.texts))[:reviews])
    processor = TextPreprocessor(max_vocab_size=cfg.max_vocab_size, tokenizer=cfg.tokenizer)
    return processor.fit_encode(texts.texts), processor.vocab_size


def words_per_second(cfg: TrainConfig, vocab_size: int, corpus: List[np.ndarray], settings: PretrainConfig) -> float:
    """One pretraining of a fresh model (seed 0) over ``settings.epochs`` of ``corpus``."""
    torch.manual_seed(0)
    model = LSTMClassifier.from_config(LSTMConfig.from_settings(cfg, vocab_size))
    stats = pretrain_language_model(model, corpus, replace(settings, checkpoint_every=10 ** 9))
    return float(stats["words_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "recommended.yaml"),
                        help="settings file whose model is pretrained")
    parser.add_argument("--reviews", type=int, default=4000, help="training reviews in the corpus")
    parser.add_argument("--words", type=int, default=400_000, help="words each variant pretrains on per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = TrainConfig.from_settings(read_config_file(args.config))
    corpus, vocab_size = corpus_of(args.data_dir, args.reviews, cfg)
    fraction = args.words / sum(len(ids) for ids in corpus)
    settings = {name: replace(SHIPPED, epochs=fraction, **change) for name, change in VARIANTS.items()}
    words_per_second(cfg, vocab_size, corpus, replace(SHIPPED, epochs=fraction / 10))  # warm-up
    rates: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, variant in settings.items():
            rates[name].append(words_per_second(cfg, vocab_size, corpus, variant))
    shipped = statistics.median(rates["shipped"])
    print(json.dumps({
        "words_per_s": {name: summary(r) for name, r in rates.items()},
        "ratio_to_shipped": {name: round(statistics.median(r) / shipped, 2) for name, r in rates.items()},
        "variants": VARIANTS, "shipped": {"window": SHIPPED.window, "batch_size": SHIPPED.batch_size,
                                          "negatives": SHIPPED.negatives},
        "config": Path(args.config).name, "model": {name: getattr(cfg, name) for name in MODEL_SETTINGS},
        "reviews": args.reviews, "words_per_round": args.words, "rounds": args.rounds, **cpu_facts()}))


if __name__ == "__main__":
    main()

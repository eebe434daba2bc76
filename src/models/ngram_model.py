"""A bag-of-n-grams classifier whose prediction is blended with the LSTM's.

The LSTM and a logistic regression on Naive-Bayes-weighted word 1-3-grams (the
features of NBSVM, Wang & Manning 2012) reach similar accuracy on IMDB but make
different mistakes, so a weighted sum of their log-odds is right more often than
either alone. The two weights are fitted on the validation split, which neither
model trained on; training then refits the n-gram model on the training and
validation reviews together (``pipeline._fit_ngram_blend``). Fitting it on 20,000
reviews takes about 25 s on two CPU cores; the README gives the accuracy.

For prediction an n-gram is one integer: the ids of its words, 21 bits each, so a
review is scored with a few array operations and a saved model loads without
rebuilding a vectoriser (scikit-learn is needed only to fit). Saved as
``ngram_model.pt`` in the model directory (loaded with ``weights_only=True``): the
words, the sorted n-gram keys, their weights, the bias and the blend weights.
Files of the first layout (the n-grams as text) still load.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from src.config import default_of
from src.data.preprocessing import LEGACY_TOKENIZER, TOKENIZERS, tokenize
from src.exceptions import CheckpointError, DataError
from src.utils.checkpoint_io import WEIGHTS_FORMAT_VERSIONS, load_state, save_state

NGRAM_FILE = "ngram_model.pt"


@dataclass
class NgramConfig:
    max_n: int = 3  # word 1- to max_n-grams
    min_reviews: int = 2  # an n-gram in fewer training reviews is left out
    inverse_l2: float = 0.1  # C of the logistic regression: smaller is a stronger L2 penalty


def _vectorizer(max_n: int, tokenizer: str, vocabulary: Optional[Sequence[str]] = None, min_reviews: int = 1):
    """Turns reviews into a sparse [reviews, n-grams] matrix: 1 where the n-gram occurs."""
    from functools import partial

    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, max_n), binary=True, tokenizer=partial(tokenize, tokenizer=tokenizer),
                           token_pattern=None,
                           lowercase=False, dtype=np.float32, vocabulary=vocabulary, min_df=min_reviews)


def _log_count_ratio(present, labels: np.ndarray) -> np.ndarray:
    """log(share of positive reviews' n-grams / share of negative ones'), add-one smoothed: [n-grams]."""
    positive = np.asarray(present[labels == 1].sum(axis=0)).ravel() + 1.0
    negative = np.asarray(present[labels == 0].sum(axis=0)).ravel() + 1.0
    return np.log(positive / positive.sum()) - np.log(negative / negative.sum())


WORD_BITS = 21  # bits of a word id in an n-gram key: 3 words fit in an int64
MAX_WORDS = (1 << WORD_BITS) - 1


def _pack(ngrams: Sequence[str], max_n: int) -> Tuple[List[str], np.ndarray]:
    """The words of ``ngrams`` and each n-gram's key (word ids from 1, ``WORD_BITS`` apart)."""
    words = sorted({word for ngram in ngrams for word in ngram.split(" ")})
    if len(words) > MAX_WORDS or max_n * WORD_BITS > 63:
        raise DataError(f"the n-gram model holds {len(words)} words in up to {max_n}-grams; at most "
                        f"{MAX_WORDS} words in up to 3-grams fit its keys: raise its min_reviews")
    index = {word: number for number, word in enumerate(words, start=1)}
    keys = [sum(index[word] << (WORD_BITS * place) for place, word in enumerate(ngram.split(" ")))
            for ngram in ngrams]
    return words, np.array(keys, dtype=np.int64)


class NgramModel:
    """A review's score: the bias plus the weights of the n-grams it contains (each counted once). Of two
    classes one number, the log-odds of the positive class (weights [K], a float bias); of C classes one per
    class, each class against the rest (weights [K, C], bias [C]). ``tokenizer`` names how reviews become
    words (the LSTM's)."""

    def __init__(self, words: Sequence[str], keys: np.ndarray, weights: np.ndarray, bias: Union[float, Sequence[float]],
                 max_n: int, tokenizer: str = LEGACY_TOKENIZER):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}")
        keys, weights = np.asarray(keys, dtype=np.int64), np.asarray(weights, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float64)
        if keys.ndim != 1 or weights.shape[:1] != keys.shape or weights.ndim not in (1, 2) \
                or bias.shape != weights.shape[1:]:
            raise ValueError(f"{keys.shape} n-gram keys but {weights.shape} weights and {bias.shape} biases")
        order = np.argsort(keys, kind="stable")
        self.words, self.max_n = list(words), int(max_n)
        self.bias = float(bias) if bias.ndim == 0 else bias
        self.keys, self.weights = keys[order], weights[order]  # sorted for searchsorted
        self.tokenizer = tokenizer
        self._ids = {word: number for number, word in enumerate(self.words, start=1)}

    @classmethod
    def from_ngrams(cls, ngrams: Sequence[str], weights: np.ndarray, bias: Union[float, Sequence[float]], max_n: int,
                    tokenizer: str = LEGACY_TOKENIZER) -> "NgramModel":
        if len(ngrams) != len(weights):
            raise ValueError(f"{len(ngrams)} n-grams but {len(weights)} weights")
        words, keys = _pack(ngrams, max_n)
        return cls(words, keys, weights, bias, max_n, tokenizer)

    @property
    def classes(self) -> int:
        return 2 if self.weights.ndim == 1 else self.weights.shape[1]

    @property
    def ngrams(self) -> List[str]:
        """The n-grams as text, in key order."""
        mask = (1 << WORD_BITS) - 1
        return [" ".join(self.words[(key >> (WORD_BITS * place) & mask) - 1]
                         for place in range(self.max_n) if key >> (WORD_BITS * place) & mask)
                for key in self.keys.tolist()]

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], config: Optional[NgramConfig] = None,
            tokenizer: str = default_of("tokenizer"), classes: Optional[int] = None) -> "NgramModel":
        """Logistic regression on the n-gram indicators scaled by their log-count ratios (NBSVM's features);
        of more than two classes (``classes``, default: the largest label + 1) one per class, against the rest."""
        config = config or NgramConfig()
        labels = np.asarray(labels)
        vectorizer = _vectorizer(config.max_n, tokenizer, min_reviews=config.min_reviews)
        try:
            present = vectorizer.fit_transform(texts)
        except ValueError:
            raise DataError(f"no word occurs in {config.min_reviews} or more training reviews; too little "
                            "text for the n-gram model") from None
        classes = classes or int(labels.max()) + 1
        fits = [_nbsvm(present, labels == c, config.inverse_l2) for c in ([1] if classes == 2 else range(classes))]
        weights, biases = zip(*fits)
        ngrams = vectorizer.get_feature_names_out().tolist()
        if classes == 2:
            return cls.from_ngrams(ngrams, weights[0], biases[0], config.max_n, tokenizer)
        return cls.from_ngrams(ngrams, np.stack(weights, axis=1), list(biases), config.max_n, tokenizer)

    def word_ids(self, tokenized: Sequence[Sequence[str]]) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids, rows)``: the model's id of every token of the reviews (0: a word it does not know), each
        review followed by a 0, and the review each position belongs to (int64 [tokens + reviews] both)."""
        lengths = np.fromiter(map(len, tokenized), dtype=np.int64, count=len(tokenized))
        words = np.fromiter(map(self._ids.get, itertools.chain.from_iterable(tokenized), itertools.repeat(0)),
                            dtype=np.int64, count=int(lengths.sum()))
        ids, in_review = np.zeros(len(words) + len(lengths), dtype=np.int64), np.ones(len(words) + len(lengths), bool)
        in_review[np.cumsum(lengths + 1) - 1] = False
        ids[in_review] = words
        return ids, np.repeat(np.arange(len(lengths)), lengths + 1)

    def places(self, keys: np.ndarray) -> np.ndarray:
        """Where each n-gram key is among the model's (-1 where it is not): int64 [len(keys)]."""
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        found = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[found] == keys, found, -1)

    def log_odds(self, texts: Sequence[str], tokenized: Optional[Sequence[Sequence[str]]] = None) -> np.ndarray:
        """Of two classes log(P(positive) / P(negative)) of each text, float64 [len(texts)]; of C classes each
        class's log-odds against the rest, [len(texts), C]. ``tokenized``: the texts' tokens by the model's
        tokenizer, where the caller has them already."""
        if tokenized is None:
            tokenized = [tokenize(text, tokenizer=self.tokenizer) for text in texts]
        ids, rows = self.word_ids(tokenized)
        starts, _, keys = ngram_windows(ids, self.max_n)
        # sorted by key, a batch's lookups touch the model's sorted keys in order; a key's occurrences keep
        # their order (reviews ascending), so each review's repeats of an n-gram are neighbours
        order = np.argsort(keys, kind="stable")
        keys, rows = keys[order], rows[starts[order]]
        places = self.places(keys)
        counted = places >= 0
        counted[1:] &= (keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1])  # an n-gram counts once per review
        rows, places = rows[counted], places[counted]
        if self.weights.ndim == 1:
            return np.bincount(rows, weights=self.weights[places], minlength=len(tokenized)) + self.bias
        scores = np.zeros((len(tokenized), self.weights.shape[1]))
        np.add.at(scores, rows, self.weights[places].astype(np.float64))
        return scores + self.bias


def out_of_fold_log_odds(texts: Sequence[str], labels: Sequence[int], folds: int, seed: int,
                         tokenizer: str = default_of("tokenizer")) -> np.ndarray:
    """Each review's positive log-odds [reviews] from an n-gram model fitted on the other ``folds - 1``
    parts of the reviews (two classes), so that no score comes from a model that saw its review; the parts
    are a ``seed``-shuffled split. The teacher of ``--ngram-teacher``."""
    labels = np.asarray(labels)
    parts = np.array_split(np.random.default_rng(seed).permutation(len(labels)), folds)
    scores = np.empty(len(labels))
    for part in parts:
        rest = np.setdiff1d(np.arange(len(labels)), part)
        if len(np.unique(labels[rest])) < 2:
            raise DataError(f"the {len(labels)} training reviews are too few of one class to fit the n-gram "
                            "teacher on each part; train on more reviews or leave out --ngram-teacher")
        model = NgramModel.fit([texts[i] for i in rest], labels[rest], tokenizer=tokenizer, classes=2)
        scores[part] = model.log_odds([texts[i] for i in part])
    return scores


def ngram_windows(ids: np.ndarray, max_n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every run of 1 to ``max_n`` consecutive known words (ids > 0) in ``ids``: its start, its length and its
    key (the ids ``WORD_BITS`` apart), int64 [runs] each, by length and then start."""
    starts, sizes, keys = [], [], []
    key, known = ids.copy(), ids > 0
    for n in range(1, max_n + 1):
        if n > 1:  # extend each window by the word after it; one that reaches an unknown word or a 0 is out
            following = ids[n - 1:]
            key = key[: len(following)] | (following << (WORD_BITS * (n - 1)))
            known = known[: len(following)] & (following > 0)
        start = np.flatnonzero(known)
        starts.append(start)
        sizes.append(np.full(len(start), n, dtype=np.int64))
        keys.append(key[start])
    return np.concatenate(starts), np.concatenate(sizes), np.concatenate(keys)


def _nbsvm(present, positive: np.ndarray, inverse_l2: float) -> Tuple[np.ndarray, float]:
    """NBSVM's weights of the n-grams (their log-count ratios times the regression's coefficients) and bias,
    for ``positive`` (bool [reviews]) against the rest."""
    from scipy.sparse import diags
    from sklearn.linear_model import LogisticRegression

    ratio = _log_count_ratio(present, positive.astype(np.int64))
    regression = LogisticRegression(C=inverse_l2, solver="liblinear", dual=True, max_iter=3000, random_state=0)
    regression.fit(present @ diags(ratio), positive.astype(np.int64))
    return regression.coef_.ravel() * ratio, float(regression.intercept_[0])


@dataclass
class Blend:
    """The blended scores: ``lstm_weight * LSTM + ngram_weight * n-gram model + bias``: of two classes
    log-odds (a float bias), of C classes logits (the LSTM's) and per-class log-odds (the n-gram model's),
    with one bias per class."""

    lstm_weight: float
    ngram_weight: float
    bias: Union[float, List[float]]

    @classmethod
    def fit(cls, lstm_log_odds: np.ndarray, ngram_log_odds: np.ndarray, labels: Sequence[int]) -> "Blend":
        """The weights that best predict ``labels`` (a logistic regression on the two scores; of C classes a
        softmax regression with the two weights shared by all classes)."""
        if np.ndim(lstm_log_odds) == 2:
            return cls._fit_classes(np.asarray(lstm_log_odds), np.asarray(ngram_log_odds), np.asarray(labels))
        from sklearn.linear_model import LogisticRegression

        regression = LogisticRegression(C=100.0).fit(np.column_stack([lstm_log_odds, ngram_log_odds]), labels)
        lstm_weight, ngram_weight = regression.coef_.ravel().tolist()
        return cls(lstm_weight, ngram_weight, float(regression.intercept_[0]))

    @classmethod
    def _fit_classes(cls, lstm: np.ndarray, ngram: np.ndarray, labels: np.ndarray) -> "Blend":
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        rows = np.arange(len(labels))

        def loss(params: np.ndarray) -> float:  # mean cross-entropy, and a light L2 penalty as above (C=100)
            scores = params[0] * lstm + params[1] * ngram + params[2:]
            return float(-log_softmax(scores, axis=1)[rows, labels].mean() + np.sum(params[:2] ** 2) / (200 * len(rows)))

        start = np.r_[1.0, 0.0, np.zeros(lstm.shape[1])]
        params = minimize(loss, start, method="L-BFGS-B").x
        return cls(float(params[0]), float(params[1]), params[2:].tolist())

    def apply(self, lstm_log_odds: np.ndarray, ngram_log_odds: np.ndarray) -> np.ndarray:
        bias = np.asarray(self.bias) if isinstance(self.bias, list) else self.bias
        return self.lstm_weight * lstm_log_odds + self.ngram_weight * ngram_log_odds + bias


class NgramBlend:
    """An ``NgramModel`` and the ``Blend`` that mixes it with an LSTM."""

    def __init__(self, model: NgramModel, blend: Blend):
        biases = 1 if model.classes == 2 else model.classes
        if np.shape(blend.bias) != (() if biases == 1 else (biases,)):
            raise ValueError(f"the blend has {np.size(blend.bias)} biases for {model.classes} classes")
        self.model, self.blend = model, blend

    def combine(self, lstm_log_odds: np.ndarray, texts: Sequence[str],
                tokenized: Optional[Sequence[Sequence[str]]] = None) -> np.ndarray:
        """Blended log-odds of ``texts``, given the LSTM's log-odds of the same texts (and, optionally, their
        tokens by the n-gram model's tokenizer)."""
        return self.blend.apply(lstm_log_odds, self.model.log_odds(texts, tokenized))

    def save(self, directory: Union[str, Path]) -> Path:
        word_bytes = bytearray("\n".join(self.model.words).encode("utf-8"))
        return save_state(Path(directory) / NGRAM_FILE, {
            "words_utf8": torch.frombuffer(word_bytes, dtype=torch.uint8), "keys": torch.from_numpy(self.model.keys),
            "weights": torch.from_numpy(self.model.weights), "max_n": self.model.max_n,
            "bias": self.model.bias if isinstance(self.model.bias, float) else self.model.bias.tolist(),
            "tokenizer": self.model.tokenizer, "blend": asdict(self.blend)})

    @classmethod
    def load(cls, directory: Union[str, Path]) -> Optional["NgramBlend"]:
        """The blend saved in a model directory, or None when it has none."""
        path = Path(directory) / NGRAM_FILE
        if not path.is_file():
            return None
        state = load_state(path, versions=WEIGHTS_FORMAT_VERSIONS)
        try:
            return cls(_model_from_state(state), Blend(**state["blend"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{path} does not hold a usable n-gram model ({err})") from None


def _model_from_state(state: Dict[str, Any]) -> NgramModel:
    weights, bias, max_n = state["weights"].numpy(), state["bias"], int(state["max_n"])
    tokenizer = state.get("tokenizer", LEGACY_TOKENIZER)  # files from before tokenizers had names
    if "ngrams_utf8" in state:  # the first layout: the n-grams as text
        ngrams = bytes(state["ngrams_utf8"].numpy()).decode("utf-8").split("\n")
        return NgramModel.from_ngrams(ngrams, weights, bias, max_n, tokenizer)
    words = bytes(state["words_utf8"].numpy()).decode("utf-8").split("\n")
    return NgramModel(words, state["keys"].numpy(), weights, bias, max_n, tokenizer)

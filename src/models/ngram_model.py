"""A bag-of-n-grams classifier whose prediction is blended with the LSTM's.

The LSTM and a logistic regression on Naive-Bayes-weighted word 1-3-grams (the
features of NBSVM, Wang & Manning 2012) reach similar accuracy on IMDB but make
different mistakes, so a weighted sum of their log-odds is right more often than
either alone. The two weights are fitted on the validation split, which neither
model trained on. Fitting the n-gram model on 20,000 reviews takes about 25 s
on two CPU cores; the README's performance section gives the accuracy.

Saved as ``ngram_model.pt`` in the model directory (loaded with
``weights_only=True``): the n-grams as UTF-8 bytes, their weights, the bias and
the blend weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from src.data.preprocessing import tokenize
from src.exceptions import CheckpointError, DataError
from src.utils.checkpoint_io import WEIGHTS_FORMAT_VERSIONS, load_state, save_state

NGRAM_FILE = "ngram_model.pt"


@dataclass
class NgramConfig:
    max_n: int = 3  # word 1- to max_n-grams
    min_reviews: int = 2  # an n-gram in fewer training reviews is left out
    inverse_l2: float = 0.1  # C of the logistic regression: smaller is a stronger L2 penalty


def _vectorizer(max_n: int, vocabulary: Optional[Sequence[str]] = None, min_reviews: int = 1):
    """Turns reviews into a sparse [reviews, n-grams] matrix: 1 where the n-gram occurs."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, max_n), binary=True, tokenizer=tokenize, token_pattern=None,
                           lowercase=False, dtype=np.float32, vocabulary=vocabulary, min_df=min_reviews)


def _log_count_ratio(present, labels: np.ndarray) -> np.ndarray:
    """log(share of positive reviews' n-grams / share of negative ones'), add-one smoothed: [n-grams]."""
    positive = np.asarray(present[labels == 1].sum(axis=0)).ravel() + 1.0
    negative = np.asarray(present[labels == 0].sum(axis=0)).ravel() + 1.0
    return np.log(positive / positive.sum()) - np.log(negative / negative.sum())


class NgramModel:
    """Log-odds of "positive" for a review: the bias plus the weights of the n-grams it contains."""

    def __init__(self, ngrams: Sequence[str], weights: np.ndarray, bias: float, max_n: int):
        if len(ngrams) != len(weights):
            raise ValueError(f"{len(ngrams)} n-grams but {len(weights)} weights")
        self.ngrams = list(ngrams)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = float(bias)
        self.max_n = max_n
        self._vectorizer = _vectorizer(max_n, vocabulary=self.ngrams)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], config: Optional[NgramConfig] = None) -> "NgramModel":
        """Logistic regression on the n-gram indicators scaled by their log-count ratios (NBSVM's features)."""
        from scipy.sparse import diags
        from sklearn.linear_model import LogisticRegression

        config = config or NgramConfig()
        labels = np.asarray(labels)
        vectorizer = _vectorizer(config.max_n, min_reviews=config.min_reviews)
        try:
            present = vectorizer.fit_transform(texts)
        except ValueError:
            raise DataError(f"no word occurs in {config.min_reviews} or more training reviews; too little "
                            "text for the n-gram model") from None
        ratio = _log_count_ratio(present, labels)
        regression = LogisticRegression(C=config.inverse_l2, solver="liblinear", dual=True, max_iter=3000)
        regression.fit(present @ diags(ratio), labels)
        return cls(vectorizer.get_feature_names_out().tolist(), regression.coef_.ravel() * ratio,
                   regression.intercept_[0], config.max_n)

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectorizer.transform(texts) @ self.weights.astype(np.float64) + self.bias


@dataclass
class Blend:
    """The blended log-odds: ``lstm_weight * LSTM + ngram_weight * n-gram model + bias``."""

    lstm_weight: float
    ngram_weight: float
    bias: float

    @classmethod
    def fit(cls, lstm_log_odds: np.ndarray, ngram_log_odds: np.ndarray, labels: Sequence[int]) -> "Blend":
        """The weights that best predict ``labels`` (a logistic regression on the two log-odds)."""
        from sklearn.linear_model import LogisticRegression

        regression = LogisticRegression(C=100.0).fit(np.column_stack([lstm_log_odds, ngram_log_odds]), labels)
        lstm_weight, ngram_weight = regression.coef_.ravel().tolist()
        return cls(lstm_weight, ngram_weight, float(regression.intercept_[0]))

    def apply(self, lstm_log_odds: np.ndarray, ngram_log_odds: np.ndarray) -> np.ndarray:
        return self.lstm_weight * lstm_log_odds + self.ngram_weight * ngram_log_odds + self.bias


class NgramBlend:
    """An ``NgramModel`` and the ``Blend`` that mixes it with an LSTM."""

    def __init__(self, model: NgramModel, blend: Blend):
        self.model, self.blend = model, blend

    def combine(self, lstm_log_odds: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Blended log-odds of ``texts``, given the LSTM's log-odds of the same texts."""
        return self.blend.apply(lstm_log_odds, self.model.log_odds(texts))

    def save(self, directory: Union[str, Path]) -> Path:
        ngram_bytes = bytearray("\n".join(self.model.ngrams).encode("utf-8"))
        return save_state(Path(directory) / NGRAM_FILE, {
            "ngrams_utf8": torch.frombuffer(ngram_bytes, dtype=torch.uint8),
            "weights": torch.from_numpy(self.model.weights), "bias": self.model.bias, "max_n": self.model.max_n,
            "blend": asdict(self.blend)})

    @classmethod
    def load(cls, directory: Union[str, Path]) -> Optional["NgramBlend"]:
        """The blend saved in a model directory, or None when it has none."""
        path = Path(directory) / NGRAM_FILE
        if not path.is_file():
            return None
        state = load_state(path, versions=WEIGHTS_FORMAT_VERSIONS)
        try:
            ngrams = bytes(state["ngrams_utf8"].numpy()).decode("utf-8").split("\n")
            model = NgramModel(ngrams, state["weights"].numpy(), state["bias"], int(state["max_n"]))
            return cls(model, Blend(**state["blend"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{path} does not hold a usable n-gram model ({err})") from None

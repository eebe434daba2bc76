"""Per-word contributions to a prediction, and the deletion test that shows they mean something.

Every word of a review gets a ``contribution`` in the unit of the log-odds the
probability comes from: of two classes log(P(positive) / P(negative)), of more
log(P(predicted) / P(runner-up)), after the model's temperature. Positive means
toward the ``target`` class (the positive one of two classes, the predicted one of
more). Two parts make it up:

* the LSTM's, by integrated gradients (Sundararajan et al. 2017, "Axiomatic
  attribution for deep networks"; Captum's ``IntegratedGradients`` computes the
  same): the gradient of the LSTM's score with respect to each word vector,
  averaged along the straight path from all-zero word vectors to the review's and
  multiplied by the word vector (Gauss-Legendre quadrature, Captum's default rule),
  so the contributions add up to the score of the review minus that of the
  all-zero review (up to the quadrature's error); or by occlusion: the score of the review minus the score with
  that one word deleted. Words cut by the model's truncation get no LSTM part.
* of a model blended with n-grams, the n-gram model's, exactly: each n-gram's
  weight (it is a linear model) split evenly over the words of its occurrences.

A blended model's contribution is ``(lstm_weight * LSTM part + ngram_weight * n-gram
part) / temperature``; the two weighted parts are given too (``lstm``, ``ngram``).

``deletion_drops`` measures whether the contributions mean something: deleting a
review's words with the largest contributions toward its predicted label should
lower that label's probability far more than deleting as many random words
(``bench/explain.py``; ``docs/explanations.md`` has the numbers).
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from src.data.preprocessing import LEGACY_TOKENIZER, UNK_IDX, reading_form, tokenize
from src.models.ngram_model import NgramBlend, NgramModel, ngram_windows

if TYPE_CHECKING:
    from src.inference.predictor import SentimentPredictor

METHODS = ("integrated_gradients", "occlusion")
# bench/explain.py on 300 IMDB test reviews: both methods' deletion ratios are equal (within 1.1%, the paired
# difference within chance), and integrated gradients took 2.1-2.4 times less time (docs/explanations.md)
DEFAULT_METHOD = "integrated_gradients"
# Integrated gradients' quadrature points. The contributions then add up to the log-odds less the baseline's
# within 1% on average for the recommended model, 15.5% for the fast one, whose score rises steeply within a short
# stretch of the path (128 points: 9.5%, at 4 times the cost and the same deletion ratio); docs/explanations.md.
DEFAULT_STEPS = 32
MAX_STEPS = 4096  # more is no use (see the numbers above) and would only allocate
UNIT = "log-odds"


def _check_settings(method: str, steps: int) -> None:
    """ValueError naming the fix for an unknown method or a step count outside 1 to ``MAX_STEPS``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}")


def explain_batch(predictor: "SentimentPredictor", texts: Sequence[str], batch_size: int,
                  method: str = DEFAULT_METHOD, steps: int = DEFAULT_STEPS) -> List[Dict[str, object]]:
    """``predictor.predict_batch(texts)``, each result with its ``explanation`` added (see the module's
    docstring); ``batch_size`` also bounds the rows of one attribution pass."""
    _check_settings(method, steps)
    if isinstance(texts, str):
        raise TypeError("give a list of texts, not one text (explain() takes one)")
    predictions = predictor.predict_batch(texts, batch_size)  # checks that every text is text
    return [{**prediction, "explanation": _explain_text(predictor, text, str(prediction["label"]),
                                                        prediction["probabilities"], batch_size, method, steps)}
            for text, prediction in zip(texts, predictions)]


def _explain_text(predictor: "SentimentPredictor", text: str, label: str, probabilities: Dict[str, float],
                  batch_size: int, method: str, steps: int) -> Dict[str, object]:
    """The ``explanation`` of one review predicted as ``label`` with ``probabilities`` (every class's)."""
    names = list(predictor.class_names)
    if len(names) == 2:
        target, against = 1, 0
    else:  # the predicted class against the runner-up
        target = names.index(label)
        against = max((i for i in range(len(names)) if i != target), key=lambda i: probabilities[names[i]])
    tokens = predictor.preprocessor.tokenize(text)
    lstm, cut, score, baseline = _lstm_part(predictor, text, len(tokens), target, against, batch_size, method, steps)
    ngram = None
    if predictor.ngram_blend is not None:
        direction = np.ones(1) if len(names) == 2 else _direction(len(names), target, against)
        lstm, ngram, score, baseline = _blended(predictor.ngram_blend, text, tokens, direction, lstm, score, baseline)
    scale = 1.0 / predictor.temperature
    explanation: Dict[str, object] = {"target": names[target], "against": names[against], "unit": UNIT,
                                      "method": method, "log_odds": score * scale}
    if baseline is not None:
        explanation["baseline"] = baseline * scale
    spans = token_spans(text, tokens, predictor.preprocessor.tokenizer)
    explanation["words"] = _word_entries(tokens, spans, lstm * scale, None if ngram is None else ngram * scale, cut)
    return explanation


def _blended(blend: NgramBlend, text: str, tokens: List[str], direction: np.ndarray, lstm: np.ndarray,
             lstm_score: float, lstm_baseline: Optional[float]
             ) -> Tuple[np.ndarray, np.ndarray, float, Optional[float]]:
    """A blended model's weighted LSTM and n-gram parts of each word, and its score toward the target
    (``direction`` over its scores) of the review and of the baseline (no words), before the temperature."""
    model, weights = blend.model, blend.blend
    if tokenize(text, tokenizer=model.tokenizer) != tokens:
        raise ValueError("this model's n-gram part reads other words than its LSTM (another tokenizer); "
                         "explain the LSTM alone (a model directory without ngram_model.pt) or retrain")
    bias = float(np.dot(np.atleast_1d(weights.bias), direction))
    ngram_score = float(np.dot(np.atleast_1d(model.log_odds([text], [tokens])[0]), direction))
    score = weights.lstm_weight * lstm_score + weights.ngram_weight * ngram_score + bias
    ngram_bias = float(np.dot(np.atleast_1d(model.bias), direction))
    baseline = None if lstm_baseline is None else \
        weights.lstm_weight * lstm_baseline + weights.ngram_weight * ngram_bias + bias
    ngram = weights.ngram_weight * _project(ngram_word_parts(model, tokens), direction)
    return weights.lstm_weight * lstm, ngram, score, baseline


def _word_entries(tokens: List[str], spans: List[Tuple[Optional[int], Optional[int]]], lstm: np.ndarray,
                  ngram: Optional[np.ndarray], cut: np.ndarray) -> List[Dict[str, object]]:
    total = lstm if ngram is None else lstm + ngram
    entries = []
    for index, (token, (start, end)) in enumerate(zip(tokens, spans)):
        entry: Dict[str, object] = {"word": token, "start": start, "end": end,
                                    "contribution": float(total[index]), "truncated": bool(cut[index])}
        if ngram is not None:
            entry.update(lstm=float(lstm[index]), ngram=float(ngram[index]))
        entries.append(entry)
    return entries


def token_spans(text: str, tokens: Sequence[str], tokenizer: str = LEGACY_TOKENIZER
                ) -> List[Tuple[Optional[int], Optional[int]]]:
    """Each token's character offsets ``(start, end)`` in ``text`` (Python string indices: code points),
    found in order in the text as ``tokenizer`` reads it (each character with its combining marks), lower-cased;
    ``(None, None)`` for a token not found after the one before it."""
    clusters = _clusters(text)
    pieces = [reading_form(text[start:end], tokenizer) for start, end in clusters]
    lowered = "".join(pieces).lower()  # as a whole: a Greek word's last sigma lower-cases to its final form
    starts = [start for (start, _), piece in zip(clusters, pieces) for _ in piece.lower()]  # lowered -> text
    ends = [end for (_, end), piece in zip(clusters, pieces) for _ in piece.lower()]
    if len(starts) != len(lowered):  # a lower-casing in context that changed a length: piece by piece instead
        lowered = "".join(piece.lower() for piece in pieces)
    spans: List[Tuple[Optional[int], Optional[int]]] = []
    cursor = 0
    for token in tokens:
        needle = token.lower()
        found = lowered.find(needle, cursor) if needle else -1
        if found < 0:
            spans.append((None, None))
            continue
        cursor = found + len(needle)
        spans.append((starts[found], ends[cursor - 1]))
    return spans


def _clusters(text: str) -> List[Tuple[int, int]]:
    """``(start, end)`` of each character of ``text`` with the combining marks after it, which normalisation
    (NFC) may compose with it."""
    clusters: List[Tuple[int, int]] = []
    for index, character in enumerate(text):
        if clusters and unicodedata.category(character).startswith("M"):
            clusters[-1] = (clusters[-1][0], index + 1)
        else:
            clusters.append((index, index + 1))
    return clusters


def _lstm_part(predictor: "SentimentPredictor", text: str, count: int, target: int, against: int,
               batch_size: int, method: str, steps: int
               ) -> Tuple[np.ndarray, np.ndarray, float, Optional[float]]:
    """The LSTM's contribution of each of the review's ``count`` tokens (0 for those truncation cuts), which
    were cut, and the LSTM's score toward the target of the review and (integrated gradients) of the
    all-zero baseline."""
    model = predictor.model
    ids = torch.as_tensor(predictor.encode([text])[0], dtype=torch.long, device=predictor.device)
    direction = torch.as_tensor(_direction(model.config.output_dim, target, against), dtype=torch.float32,
                                device=predictor.device)
    baseline: Optional[float] = None
    if method == "integrated_gradients":
        attributions, score, baseline = integrated_gradients(model, ids, direction, steps, batch_size)
    else:
        attributions, score = occlusion(model, ids, direction, batch_size)
    contributions, cut = np.zeros(count), np.ones(count, dtype=bool)
    if count:
        kept = predictor.preprocessor.truncate_for_prediction(np.arange(count))  # the positions the model reads
        contributions[kept], cut[kept] = attributions, False
    return contributions, cut, score, baseline


def _direction(outputs: int, target: int, against: int) -> np.ndarray:
    """Weights over ``outputs`` scores (the LSTM's outputs, or a blend's per-class scores) that give the score
    toward ``target`` against ``against``; one output is already the positive class's log-odds."""
    if outputs == 1:
        return np.ones(1)
    direction = np.zeros(outputs)
    direction[target], direction[against] = 1.0, -1.0
    return direction


def _project(parts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return parts.reshape(len(parts), -1) @ direction


def _scores(model: torch.nn.Module, ids: torch.Tensor, direction: torch.Tensor,
            shift: Optional[torch.Tensor]) -> torch.Tensor:
    """The LSTM's score toward the target of each row of ``ids`` [B, T] (all of length T): [B]."""
    lengths = torch.full((ids.size(0),), ids.size(1), dtype=torch.long, device=ids.device)
    logits = model(ids, lengths, embedding_shift=shift)
    return logits.reshape(ids.size(0), -1).float() @ direction


def integrated_gradients(model: torch.nn.Module, ids: torch.Tensor, direction: torch.Tensor, steps: int,
                         batch_size: int) -> Tuple[np.ndarray, float, float]:
    """Integrated gradients of the LSTM's score toward the target for each position of ``ids`` [T], from
    all-zero word vectors; with the scores of the review and of that baseline (the attributions add up to
    their difference, up to the quadrature's error). The steps run as batches of up to ``batch_size`` rows;
    ``embedding_shift`` scales the word vectors: vectors + (alpha - 1) * vectors = alpha * vectors."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]; mapped to alphas in [0, 1]
    alphas = torch.as_tensor((nodes + 1) / 2, dtype=torch.float32, device=ids.device)
    weights = torch.as_tensor(weights / 2, dtype=torch.float32, device=ids.device)
    with torch.no_grad():
        vectors = model.embedding(ids[None]).float()  # [1, T, E]
    gradient = torch.zeros_like(vectors[0])
    # cuDNN computes an LSTM's gradient only in training mode; the model stays in eval mode (no dropout)
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        for start in range(0, steps, batch_size):
            alpha = alphas[start: start + batch_size]
            shift = ((alpha - 1)[:, None, None] * vectors).requires_grad_(True)
            scores = _scores(model, ids[None].expand(len(alpha), -1), direction, shift)
            (step_gradient,) = torch.autograd.grad(scores.sum(), shift)
            gradient += (weights[start: start + batch_size, None, None] * step_gradient).sum(dim=0)
    with torch.no_grad():
        ends = _scores(model, ids[None].expand(2, -1), direction, torch.cat([-vectors, torch.zeros_like(vectors)]))
    return (vectors[0] * gradient).sum(dim=-1).cpu().numpy().astype(np.float64), float(ends[1]), float(ends[0])


@torch.inference_mode()
def occlusion(model: torch.nn.Module, ids: torch.Tensor, direction: torch.Tensor,
              batch_size: int) -> Tuple[np.ndarray, float]:
    """For each position of ``ids`` [T]: the LSTM's score toward the target minus its score with that token
    deleted (the sequence one shorter; a review left empty reads as one ``<unk>``, as the preprocessor makes
    it), in batches of ``batch_size`` such sequences; with the review's score."""
    length = len(ids)
    score = float(_scores(model, ids[None], direction, None)[0])
    if length == 1:
        without = _scores(model, torch.full((1, 1), UNK_IDX, dtype=ids.dtype, device=ids.device), direction, None)
    else:
        steps = torch.arange(length, device=ids.device)
        chunks = []
        for start in range(0, length, batch_size):
            deleted = steps[start: start + batch_size]
            keep = steps[None] != deleted[:, None]  # [rows, T]: all but the deleted position
            chunks.append(_scores(model, ids[None].expand(len(deleted), -1)[keep].view(len(deleted), length - 1),
                                  direction, None))
        without = torch.cat(chunks)
    return (score - without).cpu().numpy().astype(np.float64), score


def ngram_word_parts(model: NgramModel, tokens: Sequence[str]) -> np.ndarray:
    """Each token's share of the n-gram model's score: every n-gram the model knows, counted once per review
    as the model counts it, has its weight split evenly over the words of all its occurrences. [len(tokens)]
    of two classes, [len(tokens), C] of more; the shares add up to the review's score less the model's bias."""
    ids = model.word_ids([list(tokens)])[0][:-1]  # [len(tokens)]
    start, size, key = ngram_windows(ids, model.max_n)
    parts = np.zeros((len(tokens),) + model.weights.shape[1:])
    places = model.places(key)
    hit = places >= 0
    start, size, key, weight = start[hit], size[hit], key[hit], model.weights[places[hit]].astype(np.float64)
    _, occurrence, occurrences = np.unique(key, return_inverse=True, return_counts=True)
    share = weight / (size * occurrences[occurrence.ravel()]).reshape((-1,) + (1,) * (weight.ndim - 1))
    for offset in range(model.max_n):
        words = size > offset
        np.add.at(parts, start[words] + offset, share[words])
    return parts


def deleted_text(tokens: Sequence[str], positions: Sequence[int]) -> str:
    """The review with the tokens at ``positions`` deleted: its other tokens joined by spaces (which the
    tokenizer reads back as exactly those tokens)."""
    dropped = set(int(p) for p in positions)
    return " ".join(token for index, token in enumerate(tokens) if index not in dropped)


def deletion_drops(predictor: "SentimentPredictor", explained: Sequence[Dict[str, object]], batch_size: int,
                   words: int = 5, draws: int = 5, seed: int = 0) -> Dict[str, np.ndarray]:
    """For each review ``predictor.explain_batch`` ``explained``: how much its predicted label's probability
    falls when ``words`` of its tokens are deleted (``deleted_text``): ``top``, those with the largest
    contributions toward that label; ``random``, random ones, averaged over ``draws`` seeded draws. Both
    [len(explained)], against the review with none deleted (its tokens joined by spaces)."""
    rng = np.random.default_rng(seed)
    variants: List[str] = []
    labels = []
    for result in explained:
        explanation = result["explanation"]
        tokens = [entry["word"] for entry in explanation["words"]]
        sign = 1.0 if explanation["target"] == result["label"] else -1.0
        toward = sign * np.array([entry["contribution"] for entry in explanation["words"]])
        count = min(words, len(tokens))
        picks = [np.argsort(-toward, kind="stable")[:count]] + [rng.choice(len(tokens), count, replace=False)
                                                                 for _ in range(draws)]
        variants += [deleted_text(tokens, ())] + [deleted_text(tokens, pick) for pick in picks]
        labels.append(list(predictor.class_names).index(result["label"]))
    probabilities = predictor.class_probabilities(variants, batch_size).reshape(len(explained), draws + 2, -1)
    chosen = probabilities[np.arange(len(explained)), :, labels]  # [reviews, 2 + draws]: the predicted label's
    drops = chosen[:, :1] - chosen[:, 1:]
    return {"top": drops[:, 0], "random": drops[:, 1:].mean(axis=1)}

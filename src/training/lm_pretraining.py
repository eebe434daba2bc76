"""Language-model pretraining of the embedding and first LSTM layer on unlabeled reviews.

Semi-supervised, in the spirit of SA-LSTM and ELMo: before the classifier sees a
label, the forward LSTM of layer 1 learns to predict the next word and (in a
bidirectional model) the backward LSTM the previous word, on the 50,000 unlabeled
IMDB reviews plus the training reviews. Layers above the first read both
directions at once, so they would see the word they must predict; they are left
to fine-tuning.

The softmax over the vocabulary is sampled (``negatives`` words per step drawn
from the unigram distribution to the power 0.75, with the usual log-probability
correction), which makes pretraining cost about what a classifier step does
instead of the vocabulary-size multiple of a full softmax.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from src.models.lstm_model import LSTMClassifier

logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Settings of language-model pretraining."""

    epochs: float = 1.0  # passes over the corpus; fractions allowed
    window: int = 100  # words per training sequence, cut from the concatenated reviews
    batch_size: int = 128  # sequences per step
    negatives: int = 512  # sampled words per step for the softmax
    learning_rate: float = 2e-3
    dropout: float = 0.1
    gradient_clip: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ValueError(f"pretraining epochs must be positive, got {self.epochs}")
        for name in ("window", "batch_size", "negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretraining {name} must be at least 1, got {getattr(self, name)}")


def token_stream(token_ids: Sequence[np.ndarray], rng: np.random.Generator, separator: int) -> np.ndarray:
    """All reviews in a random order, one ``separator`` after each: int64 [total + reviews]."""
    order = rng.permutation(len(token_ids))
    parts: List[np.ndarray] = []
    boundary = np.array([separator], dtype=np.int64)
    for index in order:
        parts.extend((np.asarray(token_ids[index], dtype=np.int64), boundary))
    return np.concatenate(parts)


def sampling_distribution(token_ids: Sequence[np.ndarray], vocab_size: int, pad_idx: int) -> torch.Tensor:
    """Unigram frequencies to the power 0.75 (never the padding id), normalised: [V]."""
    counts = np.bincount(np.concatenate(token_ids).astype(np.int64), minlength=vocab_size).astype(np.float64)
    counts[pad_idx] = 0.0
    weights = counts ** 0.75
    if weights.sum() == 0:
        raise ValueError("the pretraining corpus has no words")
    return torch.tensor(weights / weights.sum(), dtype=torch.float32)


class _LanguageModelHeads(nn.Module):
    """Per direction: LSTM state -> embedding space; scores are dot products with word embeddings."""

    def __init__(self, directions: int, hidden_dim: int, embedding_dim: int, dropout: float):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(hidden_dim, embedding_dim) for _ in range(directions))
        self.dropout = nn.Dropout(dropout)

    def loss(self, direction: int, states: torch.Tensor, targets: torch.Tensor, embedding: nn.Embedding,
             negatives: torch.Tensor, log_expected: torch.Tensor, pad_idx: int) -> torch.Tensor:
        """Sampled-softmax cross-entropy; states [B, W, H], targets [B, W], negatives [K]."""
        keep = targets.reshape(-1) != pad_idx
        queries = self.project[direction](self.dropout(states)).reshape(-1, embedding.embedding_dim)[keep]  # [N, E]
        targets = targets.reshape(-1)[keep]  # [N]
        # nn.functional.embedding, not weight[ids]: the gradient of indexing sums with atomic adds
        # on the CPU, in a different order on each run, and resumed runs would not match
        true_scores = (queries * nn.functional.embedding(targets, embedding.weight)).sum(-1) - log_expected[targets]
        sampled = queries @ nn.functional.embedding(negatives, embedding.weight).T - log_expected[negatives]  # [N, K]
        sampled = sampled.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        scores = torch.cat([true_scores.unsqueeze(1), sampled], dim=1)  # the true word is class 0
        return nn.functional.cross_entropy(scores, torch.zeros_like(targets))


def pretrain_language_model(model: LSTMClassifier, token_ids: Sequence[np.ndarray], config: PretrainConfig,
                            device: torch.device = torch.device("cpu")) -> Dict[str, object]:
    """Train ``model.embedding`` and ``model.layers[0]`` as forward (and backward) language models.

    ``token_ids``: one int array per review. The rest of the model is untouched.
    Returns statistics: words, steps, seconds and the losses of the first and last
    100 steps (summed over the directions).
    """
    pad_idx = model.config.pad_idx
    distribution = sampling_distribution(token_ids, model.config.vocab_size, pad_idx)  # [V], on the CPU for sampling
    log_expected = torch.log(config.negatives * distribution.clamp_min(1e-12)).to(device)  # [V]
    heads = _LanguageModelHeads(len(model.layers[0]), model.config.hidden_dim, model.config.embedding_dim,
                                config.dropout).to(device)
    parameters = [p for module in (model.embedding, model.layers[0], heads) for p in module.parameters()
                  if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    words = sum(len(ids) for ids in token_ids)
    total_steps = max(1, int(config.epochs * (words // config.window) // config.batch_size))
    was_training = model.training
    model.train()
    losses: List[float] = []
    started = time.perf_counter()
    step = 0
    while step < total_steps:
        for batch in _windows(token_stream(token_ids, rng, pad_idx), config, generator):
            if step == total_steps:
                break
            _set_learning_rate(optimizer, config.learning_rate, step, total_steps)
            batch = batch.to(device)
            loss = _step_loss(model, heads, batch, distribution, log_expected, config.negatives, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, config.gradient_clip)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % 100 == 0:
                logger.info("language-model pretraining: step %d/%d, loss %.3f", step, total_steps,
                            float(np.mean(losses[-100:])))
    model.train(was_training)
    seconds = time.perf_counter() - started
    return {"words": words, "steps": step, "seconds": seconds, "words_per_second": step * config.batch_size
            * config.window / seconds, "first_loss": float(np.mean(losses[:100])),
            "last_loss": float(np.mean(losses[-100:])), "config": asdict(config)}


def _windows(stream: np.ndarray, config: PretrainConfig, generator: torch.Generator):
    """Batches of consecutive ``window + 1`` words (one word of overlap), in random order: [B, W + 1]."""
    count = (len(stream) - 1) // config.window
    if count == 0:
        raise ValueError(f"the pretraining corpus has fewer than {config.window + 1} words; lower the window")
    stream_tensor = torch.from_numpy(stream[: count * config.window + 1])
    starts = torch.randperm(count, generator=generator) * config.window
    offsets = torch.arange(config.window + 1)
    for first in range(0, count, config.batch_size):
        yield stream_tensor[starts[first:first + config.batch_size].unsqueeze(1) + offsets]


def _step_loss(model: LSTMClassifier, heads: _LanguageModelHeads, batch: torch.Tensor, distribution: torch.Tensor,
               log_expected: torch.Tensor, negatives: int, generator: torch.Generator) -> torch.Tensor:
    """Forward LSTM reads words 0..W-1 and predicts 1..W; backward (if any) reads W..1 and predicts W-1..0."""
    sampled = torch.multinomial(distribution, negatives, replacement=True, generator=generator)
    sampled = sampled.to(batch.device)
    pad_idx = model.config.pad_idx
    total = batch.new_zeros((), dtype=torch.float32)
    for direction, (lstm, sequence) in enumerate(zip(model.layers[0], (batch, batch.flip(1)))):
        states, _ = lstm(heads.dropout(model.embedding(sequence[:, :-1])))  # [B, W, H]
        total = total + heads.loss(direction, states, sequence[:, 1:], model.embedding, sampled, log_expected,
                                   pad_idx)
    return total


def _set_learning_rate(optimizer: torch.optim.Optimizer, peak: float, step: int, total_steps: int) -> None:
    """Constant, then a linear decay to zero over the last 20% of the steps."""
    remaining = (total_steps - step) / max(1.0, 0.2 * total_steps)
    for group in optimizer.param_groups:
        group["lr"] = peak * min(1.0, remaining)

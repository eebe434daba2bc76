"""Language-model pretraining of the embedding and LSTM layers on unlabeled reviews.

Semi-supervised, in the spirit of SA-LSTM and ELMo: before the classifier sees a
label, the forward LSTM learns to predict the next word and (in a bidirectional
model) the backward LSTM the previous word, on the 50,000 unlabeled IMDB reviews
plus the training reviews. Every layer that reads one direction only is trained
so (``LSTMConfig.language_model_layers``): the first layer of a joint
bidirectional model, whose upper layers read both directions at once and would
see the word they must predict (they are left to fine-tuning), and every layer of
a model with ``stacking="per_direction"`` or of one direction.

The softmax over the vocabulary is sampled (``negatives`` words per step drawn
from the unigram distribution to the power 0.75, with the usual log-probability
correction), which makes pretraining cost about what a classifier step does
instead of the vocabulary-size multiple of a full softmax.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from src.config import shown
from src.models.lstm_model import LSTMClassifier
from src.training.state import check_optimizer_state, load_optimizer_state, load_rng_state_dict, rng_state_dict
from src.training.trainer import build_optimizer

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
    checkpoint_every: int = 200  # steps between the saves that let an interrupted run continue

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ValueError(f"pretraining epochs must be positive, got {self.epochs}")
        for name in ("window", "batch_size", "negatives", "checkpoint_every"):
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


def corpus_digest(token_ids: Sequence[np.ndarray]) -> str:
    """SHA-256 of the reviews' token ids, in order: a saved pretraining continues only on the same corpus."""
    digest = hashlib.sha256()
    for ids in token_ids:
        review = np.ascontiguousarray(ids, dtype=np.int64)
        digest.update(len(review).to_bytes(8, "little"))
        digest.update(review.tobytes())
    return digest.hexdigest()


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
                            device: torch.device = torch.device("cpu"), state: Optional[Dict[str, Any]] = None,
                            save: Optional[Callable[[Dict[str, Any]], None]] = None,
                            should_stop: Optional[Callable[[], bool]] = None) -> Dict[str, object]:
    """Train ``model.embedding`` and the layers that read one direction (``config.language_model_layers``)
    as forward (and backward) language models.

    ``token_ids``: one int array per review. The rest of the model is untouched.
    ``save(state)`` is called every ``config.checkpoint_every`` steps, at the end, and
    when ``should_stop()`` turns true (then the run returns, ``stopped`` if steps were left);
    passing such a ``state`` back continues the run exactly where it was (the model's
    own weights are the caller's to save and restore). Returns statistics: words,
    steps, seconds and the mean losses of the first and last 100 steps (of each half, in a
    run of fewer than 200; summed over the directions).
    """
    run = _PretrainingRun(model, token_ids, config, device)
    if state is not None:
        run.load_state_dict(state)
    was_training = model.training
    model.train()
    started = time.perf_counter()
    stopped = run.train(save or (lambda _: None), should_stop or (lambda: False))
    model.train(was_training)
    seconds = time.perf_counter() - started
    window = min(100, max(1, len(run.losses) // 2))  # a short run's halves, not one mean twice
    return {"words": run.words, "steps": run.step, "total_steps": run.total_steps, "seconds": seconds,
            "words_per_second": run.steps_done_here * config.batch_size * config.window / max(seconds, 1e-9),
            "first_loss": float(np.mean(run.losses[:window])), "last_loss": float(np.mean(run.losses[-window:])),
            "stopped": stopped, "config": asdict(config)}


class _PretrainingRun:
    """The state of one pretraining run: heads, optimizer, random streams, step, position in the pass."""

    def __init__(self, model: LSTMClassifier, token_ids: Sequence[np.ndarray], config: PretrainConfig,
                 device: torch.device):
        self.model, self.token_ids, self.config, self.device = model, token_ids, config, device
        self.distribution = sampling_distribution(token_ids, model.config.vocab_size, model.config.pad_idx)  # [V]
        self.log_expected = torch.log(config.negatives * self.distribution.clamp_min(1e-12)).to(device)  # [V]
        self.heads = _LanguageModelHeads(len(model.layers[0]), model.config.hidden_dim, model.config.embedding_dim,
                                         config.dropout).to(device)
        layers = model.layers[:model.config.language_model_layers]
        self.parameters = [p for module in (model.embedding, layers, self.heads)
                           for p in module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(torch.optim.Adam, self.parameters, device, lr=config.learning_rate)
        self.rng = np.random.default_rng(config.seed)  # the order of the reviews in each pass
        self.generator = torch.Generator().manual_seed(config.seed)  # windows' order, sampled words
        self.words = sum(len(ids) for ids in token_ids)
        self.corpus = corpus_digest(token_ids)
        self.total_steps = max(1, int(config.epochs * (self.words // config.window) // config.batch_size))
        self.step, self.position, self.losses, self.steps_done_here = 0, 0, [], 0
        self._pass_start: Optional[Dict[str, Any]] = None  # the random streams as the current pass began
        self._resumed_streams: Optional[Dict[str, Any]] = None

    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "position": self.position, "losses": list(self.losses),
                "total_steps": self.total_steps, "corpus": self.corpus, "heads": self.heads.state_dict(),
                "optimizer": self.optimizer.state_dict(), "pass_start": self._pass_start,
                "streams": {"generator": self.generator.get_state(), **rng_state_dict()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"the saved pretraining ran {state['total_steps']} steps, this one would run "
                             f"{self.total_steps}: the corpus or the settings differ")
        if state.get("corpus", self.corpus) != self.corpus:  # saves from before the digest have none
            raise ValueError("the saved pretraining read other texts than this run would (the unlabeled file or "
                             "the training reviews changed); delete checkpoint_pretraining.pt from the run "
                             "directory to pretrain again from the start")
        step, position = state["step"], state["position"]
        if not (type(step) is int and 0 <= step <= self.total_steps and type(position) is int and position >= 0):
            raise ValueError(f"the saved pretraining's step ({shown(step)}) or position ({shown(position)}) is not "
                             f"a count within its {self.total_steps} steps")
        check_optimizer_state(self.optimizer, state["optimizer"])
        self.step, self.position, self.losses = step, position, list(state["losses"])
        self.heads.load_state_dict(state["heads"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self._pass_start, self._resumed_streams = state["pass_start"], state["streams"]

    def train(self, save: Callable[[Dict[str, Any]], None], should_stop: Callable[[], bool]) -> bool:
        """Run to ``total_steps``; True if ``should_stop`` ended it before them (after a ``save``)."""
        while self.step < self.total_steps:
            starts, stream = self._begin_pass()
            for first in range(self.position * self.config.batch_size, len(starts), self.config.batch_size):
                if self.step == self.total_steps:
                    break
                self._train_step(stream[starts[first:first + self.config.batch_size].unsqueeze(1)
                                        + torch.arange(self.config.window + 1)])  # [B, W + 1]
                self.position += 1
                if should_stop():
                    save(self.state_dict())
                    return self.step < self.total_steps
                if self.step % self.config.checkpoint_every == 0:
                    save(self.state_dict())
            self.position, self._pass_start = 0, None
        save(self.state_dict())
        return False

    def _begin_pass(self):
        """The pass's window starts and word stream; a resumed pass is rebuilt from the streams it began with."""
        if self._pass_start is None:
            self._pass_start = {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}
        else:
            self.rng.bit_generator.state = self._pass_start["rng"]
            self.generator.set_state(self._pass_start["generator"])
        stream = token_stream(self.token_ids, self.rng, self.model.config.pad_idx)
        count = (len(stream) - 1) // self.config.window
        if count == 0:
            raise ValueError(f"the pretraining corpus has fewer than {self.config.window + 1} words; "
                             "lower the window")
        starts = torch.randperm(count, generator=self.generator) * self.config.window  # [count]
        if self._resumed_streams is not None:  # back to where the saved run was inside this pass
            self.generator.set_state(self._resumed_streams["generator"])
            load_rng_state_dict(self._resumed_streams)
            self._resumed_streams = None
        return starts, torch.from_numpy(stream[: count * self.config.window + 1])

    def _train_step(self, batch: torch.Tensor) -> None:
        _set_learning_rate(self.optimizer, self.config.learning_rate, self.step, self.total_steps)
        loss = _step_loss(self.model, self.heads, batch.to(self.device), self.distribution, self.log_expected,
                          self.config.negatives, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters, self.config.gradient_clip)
        self.optimizer.step()
        self.losses.append(loss.item())
        self.step += 1
        self.steps_done_here += 1
        if self.step % 100 == 0:
            logger.info("language-model pretraining: step %d/%d, loss %.3f", self.step, self.total_steps,
                        float(np.mean(self.losses[-100:])))


def _step_loss(model: LSTMClassifier, heads: _LanguageModelHeads, batch: torch.Tensor, distribution: torch.Tensor,
               log_expected: torch.Tensor, negatives: int, generator: torch.Generator) -> torch.Tensor:
    """Forward LSTM reads words 0..W-1 and predicts 1..W; backward (if any) reads W..1 and predicts W-1..0."""
    sampled = torch.multinomial(distribution, negatives, replacement=True, generator=generator)
    sampled = sampled.to(batch.device)
    pad_idx, layers = model.config.pad_idx, model.config.language_model_layers
    total = batch.new_zeros((), dtype=torch.float32)
    for direction, sequence in zip(range(model.config.directions), (batch, batch.flip(1))):
        embedded = heads.dropout(model.embedding(sequence[:, :-1]))  # [B, W, E]
        # weight drop is the classifier's regulariser; one pass of pretraining does not overfit
        states = model.direction_stack(embedded, direction, layers, between=heads.dropout, weight_drop=0.0)  # [B, W, H]
        total = total + heads.loss(direction, states, sequence[:, 1:], model.embedding, sampled, log_expected,
                                   pad_idx)
    return total


def _set_learning_rate(optimizer: torch.optim.Optimizer, peak: float, step: int, total_steps: int) -> None:
    """Constant, then a linear decay to zero over the last 20% of the steps."""
    remaining = (total_steps - step) / max(1.0, 0.2 * total_steps)
    for group in optimizer.param_groups:
        group["lr"] = peak * min(1.0, remaining)

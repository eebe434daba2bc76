"""Datasets, the length-bucketing batch sampler, and the padding collate function."""

from __future__ import annotations

import hashlib
import json

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from src.data.labels import IMDB_CLASS_NAMES


Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ReviewDataset(Dataset):
    """Encoded reviews and their labels; item ``i`` is ``(token_ids int32 [L], label)``.

    ``texts``, when given, are the reviews the ids came from (for models that read words,
    such as the n-gram model of ``--ngram-blend``, and the data fingerprint); labels are
    indices into ``class_names``."""

    def __init__(self, token_ids: Sequence[np.ndarray], labels: Sequence[int], texts: Optional[Sequence[str]] = None,
                 class_names: Sequence[str] = IMDB_CLASS_NAMES):
        if len(token_ids) != len(labels) or (texts is not None and len(texts) != len(labels)):
            raise ValueError(f"{len(token_ids)} reviews but {len(labels)} labels"
                             + (f" and {len(texts)} texts" if texts is not None else ""))
        self.texts = list(texts) if texts is not None else None
        self.class_names = tuple(class_names)
        self.token_ids = list(token_ids)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.lengths = np.array([len(ids) for ids in self.token_ids], dtype=np.int64)
        self.targets: Optional[np.ndarray] = None  # float [N] in [0, 1]: what training fits instead of the labels

    def __len__(self) -> int:
        return len(self.token_ids)

    def fingerprint(self) -> str:
        """SHA-256 of the reviews (texts, or token ids without them) and labels, in order, and of the class
        names (other than IMDB's, so that fingerprints from before class names still match)."""
        digest = hashlib.sha256()
        if self.class_names != IMDB_CLASS_NAMES:
            digest.update(json.dumps(self.class_names).encode())
        for index, label in enumerate(self.labels.tolist()):
            review = self.texts[index].encode("utf-8") if self.texts is not None else self.token_ids[index].tobytes()
            digest.update(f"{label}:{len(review)}:".encode())
            digest.update(review)
        return digest.hexdigest()

    def __getitem__(self, index: int) -> Tuple[np.ndarray, float]:
        """The review's ids and its label, or its soft target where ``targets`` is set (two classes)."""
        if self.targets is not None:
            return self.token_ids[index], float(self.targets[index])
        return self.token_ids[index], int(self.labels[index])


def collate_batch(items: List[Tuple[np.ndarray, int]]) -> Batch:
    """Pad to the longest review of the batch.

    Returns ``token_ids`` long [B, T] (0 = pad), ``lengths`` long [B], ``labels`` float [B].
    """
    lengths = torch.tensor([len(ids) for ids, _ in items], dtype=torch.long)
    token_ids = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        token_ids[row, : len(ids)] = torch.from_numpy(ids)
    labels = torch.tensor([label for _, label in items], dtype=torch.float32)
    return token_ids, lengths, labels


class BucketBatchSampler(Sampler[List[int]]):
    """Batches of reviews of similar length, so little of each batch is padding.

    When shuffling, each epoch draws a seeded permutation, cuts it into pools of
    ``batch_size * pool_factor`` reviews, sorts each pool by length, cuts the pools
    into batches and shuffles the batch order. The order depends only on ``seed``
    and the epoch number, so a resumed run sees the same batches. Without
    shuffling, batches are cut from the reviews sorted by length (for evaluation).

    With ``num_replicas > 1`` (distributed training) every rank gets every
    ``num_replicas``-th batch of the same epoch order, a disjoint shard. With
    ``pad_shards`` a few batches are repeated so that every rank has the same number
    of steps (needed in training, where ranks synchronise after every step).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 0, pool_factor: int = 50, num_replicas: int = 1, rank: int = 0,
                 pad_shards: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_replicas, self.rank, self.pad_shards = num_replicas, rank, pad_shards
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_factor = pool_factor
        self.epoch = 0
        self._skip = 0

    def __len__(self) -> int:
        batches = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        if self.pad_shards:
            return -(-batches // self.num_replicas)
        return len(range(self.rank, batches, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order the next iteration yields."""
        self.epoch = epoch

    def skip_next(self, count: int) -> None:
        """Start the next pass after its first ``count`` batches (resuming mid-epoch)."""
        self._skip = count

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])

    def __iter__(self) -> Iterator[List[int]]:
        """The batches of ``self.epoch``; once all are consumed, the next epoch comes up.

        Advancing only after a full pass (not when ``iter()`` is called) keeps the order
        the same with worker processes, whose DataLoader calls ``iter()`` more than once.
        """
        batches = self._shard(self._epoch_batches(self.epoch) if self.shuffle else self._sorted_batches())
        start, self._skip = self._skip, 0
        yield from batches[start:]
        self.epoch += 1

    def _shard(self, batches: List[List[int]]) -> List[List[int]]:
        if self.num_replicas == 1:
            return batches
        if self.pad_shards and batches:
            missing = (-len(batches)) % self.num_replicas
            batches = batches + [batches[i % len(batches)] for i in range(missing)]
        return batches[self.rank::self.num_replicas]

    def _cut(self, order: np.ndarray) -> List[List[int]]:
        return [order[i: i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]

    def _sorted_batches(self) -> List[List[int]]:
        return self._cut(np.argsort(-self.lengths, kind="stable"))

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        permutation = rng.permutation(len(self.lengths))
        pool_size = self.batch_size * self.pool_factor
        batches: List[List[int]] = []
        for start in range(0, len(permutation), pool_size):
            pool = permutation[start: start + pool_size]
            pool = pool[np.argsort(-self.lengths[pool], kind="stable")]
            batches.extend(self._cut(pool))
        return [batches[i] for i in rng.permutation(len(batches))]


def padding_fraction(lengths: np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Share of the padded token grid that is padding, for these batches."""
    real = padded = 0
    for batch in batches:
        batch_lengths = lengths[list(batch)]
        real += int(batch_lengths.sum())
        padded += int(batch_lengths.max()) * len(batch)
    return 1.0 - real / padded if padded else 0.0

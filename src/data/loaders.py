"""From a data folder to ready-to-train DataLoaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import DataLoader

from src.data.datasets import (
    TRUNCATION_STRATEGIES, BucketBatchSampler, ReviewDataset, collate_batch, truncate_ids,
)
from src.data.imdb import ReviewData, download_imdb, find_imdb_source, load_imdb_splits
from src.data.preprocessing import TextPreprocessor
from src.exceptions import DataError

logger = logging.getLogger(__name__)


def stratified_sample(labels: Sequence[int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices drawn without replacement, keeping the class proportions."""
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    quotas = np.floor(sizes / sizes.sum() * count).astype(int)
    remainders = sizes / sizes.sum() * count - quotas
    for index in np.argsort(-remainders, kind="stable")[: count - quotas.sum()]:
        quotas[index] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quotas)]
    return np.sort(np.concatenate(chosen))


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with ``fraction`` held out in every class."""
    labels = np.asarray(labels)
    held_count = int(round(len(labels) * fraction))
    if held_count < 2 or len(labels) - held_count < 2:
        raise DataError(
            f"cannot hold out {fraction:.0%} of {len(labels)} reviews for validation and still "
            "have both classes on each side; use more data or another --validation-split"
        )
    held = stratified_sample(labels, held_count, np.random.default_rng(seed))
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


def _limit(reviews: ReviewData, max_samples: Optional[int], seed: int) -> ReviewData:
    if max_samples is None or max_samples >= len(reviews.texts):
        return reviews
    return reviews.select(stratified_sample(reviews.labels, max_samples, np.random.default_rng(seed)))


def _locate_data(data_dir: Union[str, Path], download: bool) -> Path:
    root = Path(data_dir)
    if find_imdb_source(root) is None and download:
        logger.info("no IMDB data under %s: downloading it there", root)
        download_imdb(root)
    return root


def _dataset(ids: List[np.ndarray], labels: List[int], max_length: int, truncation: str) -> ReviewDataset:
    return ReviewDataset([truncate_ids(x, max_length, truncation) for x in ids], labels)


def _check_arguments(batch_size: int, max_length: int, validation_split: float, truncation: str) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be between 0 and 1 (exclusive), got {validation_split}")
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_STRATEGIES)}, got {truncation!r}")


def split_reviews(data_dir: Union[str, Path], validation_split: float = 0.2, seed: int = 42,
                  max_train_samples: Optional[int] = None, max_test_samples: Optional[int] = None,
                  download: bool = True) -> Tuple[ReviewData, ReviewData, ReviewData]:
    """The training, validation and test reviews, split as ``create_data_loaders`` splits them."""
    splits = load_imdb_splits(_locate_data(data_dir, download), ("train", "test"))
    train_all = _limit(splits["train"], max_train_samples, seed)
    test = _limit(splits["test"], max_test_samples, seed)
    train_idx, val_idx = stratified_split(train_all.labels, validation_split, seed)
    return train_all.select(train_idx), train_all.select(val_idx), test


def create_data_loaders(
    data_dir: Union[str, Path],
    batch_size: int = 64,
    max_vocab_size: int = 25000,
    max_length: int = 400,
    validation_split: float = 0.2,
    seed: int = 42,
    num_workers: int = 0,
    min_freq: int = 1,
    max_train_samples: Optional[int] = None,
    max_test_samples: Optional[int] = None,
    truncation: str = "head",
    download: bool = True,
    pin_memory: bool = False,
    preprocessor: Optional[TextPreprocessor] = None,
    num_replicas: int = 1,
    rank: int = 0,
) -> Tuple[DataLoader, DataLoader, DataLoader, TextPreprocessor]:
    """Load IMDB (downloading it if absent), build the vocabulary, and return loaders.

    Validation is a stratified, seeded split of ``train/``; the vocabulary is built on
    the remaining training reviews only. ``max_train_samples`` keeps a stratified subset
    of ``train/`` before the split (for quick runs), ``max_test_samples`` likewise for
    ``test/``. Pass a fitted ``preprocessor`` to reuse an existing vocabulary.
    Batches are ``(token_ids [B, T] long, lengths [B] long, labels [B] float)``.
    """
    _check_arguments(batch_size, max_length, validation_split, truncation)
    train, val, test = split_reviews(data_dir, validation_split, seed, max_train_samples, max_test_samples, download)
    if preprocessor is None:
        preprocessor = TextPreprocessor(max_vocab_size=max_vocab_size, min_freq=min_freq)
        train_ids = preprocessor.fit_encode(train.texts)
    else:
        train_ids = preprocessor.encode_batch(train.texts)
    logger.info("data: %d train, %d validation, %d test reviews; vocabulary of %d words",
                len(train.texts), len(val.texts), len(test.texts), preprocessor.vocab_size)
    datasets = [_dataset(ids, part.labels, max_length, truncation) for ids, part in
                ((train_ids, train), (preprocessor.encode_batch(val.texts), val),
                 (preprocessor.encode_batch(test.texts), test))]
    shards = [dict(num_replicas=num_replicas, rank=rank, pad_shards=True),
              dict(num_replicas=num_replicas, rank=rank, pad_shards=False), {}]
    loaders = [
        DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed,
                                                             **shard),
                   collate_fn=collate_batch, num_workers=num_workers, pin_memory=pin_memory)
        for dataset, shuffle, shard in zip(datasets, (True, False, False), shards)
    ]
    return loaders[0], loaders[1], loaders[2], preprocessor

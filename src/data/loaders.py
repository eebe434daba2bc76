"""From a data folder to ready-to-train DataLoaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import DataLoader

from src.config import check_setting, default_of
from src.data.datasets import BucketBatchSampler, ReviewDataset, collate_batch
from src.data.imdb import ReviewData, download_imdb, find_imdb_source, load_imdb_splits, no_data_message
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
    """``data_dir``, with IMDB downloaded into it first if it is missing or empty.

    A folder that holds something else is never downloaded into: it is the user's."""
    root = Path(data_dir)
    if find_imdb_source(root) is not None or not download:
        return root
    if root.exists() and (not root.is_dir() or any(not p.name.endswith(".part") for p in root.iterdir())):
        raise DataError(no_data_message(root) + "; nothing was downloaded into it since it is not empty: pass an "
                        "empty or new folder to download IMDB there")
    logger.info("no IMDB data under %s: downloading it there", root)
    download_imdb(root)
    return root


def split_reviews(data_dir: Union[str, Path], validation_split: float = default_of("validation_split"),
                  seed: int = default_of("seed"), max_train_samples: Optional[int] = None,
                  max_test_samples: Optional[int] = None, download: bool = True
                  ) -> Tuple[ReviewData, ReviewData, ReviewData]:
    """The training, validation and test reviews, split as ``create_data_loaders`` splits them."""
    splits = load_imdb_splits(_locate_data(data_dir, download), ("train", "test"))
    train_all = _limit(splits["train"], max_train_samples, seed)
    test = _limit(splits["test"], max_test_samples, seed)
    train_idx, val_idx = stratified_split(train_all.labels, validation_split, seed)
    return train_all.select(train_idx), train_all.select(val_idx), test


def _preprocessor(given: Optional[TextPreprocessor], max_vocab_size: int, min_freq: int,
                  max_length: Optional[int], truncation: Optional[str]) -> TextPreprocessor:
    """A new preprocessor with these settings, or ``given``, whose own encoding must not be contradicted."""
    if given is None:
        encoding = {k: v for k, v in (("max_length", max_length), ("truncation", truncation)) if v is not None}
        return TextPreprocessor(max_vocab_size=max_vocab_size, min_freq=min_freq, **encoding)
    for name, value in (("max_length", max_length), ("truncation", truncation)):
        if value is not None and value != getattr(given, name):
            raise ValueError(f"{name}={value!r} contradicts the given preprocessor's {name} "
                             f"{getattr(given, name)!r}; leave it out to use the preprocessor's")
    return given


def create_data_loaders(
    data_dir: Union[str, Path],
    batch_size: int = default_of("batch_size"),
    max_vocab_size: int = default_of("max_vocab_size"),
    max_length: Optional[int] = None,
    validation_split: float = default_of("validation_split"),
    seed: int = default_of("seed"),
    num_workers: int = default_of("num_workers"),
    min_freq: int = default_of("min_freq"),
    max_train_samples: Optional[int] = None,
    max_test_samples: Optional[int] = None,
    truncation: Optional[str] = None,
    download: bool = True,
    pin_memory: bool = False,
    preprocessor: Optional[TextPreprocessor] = None,
    num_replicas: int = 1,
    rank: int = 0,
) -> Tuple[DataLoader, DataLoader, DataLoader, TextPreprocessor]:
    """Load IMDB (downloading it into a missing or empty folder), build the vocabulary, and return loaders.

    Validation is a stratified, seeded split of ``train/``; the vocabulary is built on
    the remaining training reviews only. ``max_train_samples`` keeps a stratified subset
    of ``train/`` before the split (for quick runs), ``max_test_samples`` likewise for
    ``test/``. Reviews are cut as the preprocessor says: ``max_length`` and
    ``truncation`` set those of a new one (default: ``TrainConfig``'s); pass a fitted
    ``preprocessor`` to reuse an existing vocabulary and encoding.
    Batches are ``(token_ids [B, T] long, lengths [B] long, labels [B] float)``; each
    loader's ``dataset.texts`` holds its reviews.
    """
    check_setting("batch_size", batch_size, "batch_size")
    check_setting("validation_split", validation_split, "validation_split")
    preprocessor = _preprocessor(preprocessor, max_vocab_size, min_freq, max_length, truncation)
    train, val, test = split_reviews(data_dir, validation_split, seed, max_train_samples, max_test_samples, download)
    train_ids = (preprocessor.encode_batch(train.texts) if preprocessor.is_fitted
                 else preprocessor.fit_encode(train.texts))
    logger.info("data: %d train, %d validation, %d test reviews; vocabulary of %d words",
                len(train.texts), len(val.texts), len(test.texts), preprocessor.vocab_size)
    datasets = [ReviewDataset([preprocessor.truncate(x) for x in ids], part.labels, part.texts) for ids, part in
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

"""From a data folder to ready-to-train DataLoaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Set, Tuple, Union

import numpy as np
from torch.utils.data import DataLoader

from src.config import check_setting, default_of
from src.data.datasets import BucketBatchSampler, ReviewDataset, collate_batch
from src.data.imdb import ReviewData, download_imdb, find_imdb_source, load_imdb_splits, no_data_message
from src.data.labels import class_names_of, label_indices
from src.data.preprocessing import TextPreprocessor
from src.data.tables import Table, find_split_files, read_table
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


def stratified_split(labels: Sequence[int], fraction: float, seed: int,
                     class_names: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with ``fraction`` held out in every class; DataError naming the
    class when one has too few examples to be on both sides."""
    labels = np.asarray(labels)
    held_count = int(round(len(labels) * fraction))
    if held_count < 2 or len(labels) - held_count < 2:
        raise DataError(
            f"cannot hold out {fraction:.0%} of {len(labels)} reviews for validation and still "
            "have every class on each side; use more data or another --validation-split"
        )
    held = stratified_sample(labels, held_count, np.random.default_rng(seed))
    keep = np.setdiff1d(np.arange(len(labels)), held)
    for label in np.unique(labels):
        if not (labels[held] == label).any() or not (labels[keep] == label).any():
            name = class_names[label] if class_names is not None else str(label)
            raise DataError(f"the class {name!r} has only {int((labels == label).sum())} training example(s), too "
                            f"few to hold {fraction:.0%} out for validation; add examples, raise --validation-split, "
                            "or give a validation file (--validation-file)")
    return keep, held


@dataclass(frozen=True)
class DataSource:
    """Where the labelled texts are: IMDB or your own files in ``data_dir``, or your own files named one by
    one (``train_file`` and so on; these override the folder's). The columns and ``positive_label`` apply to
    your own files."""

    data_dir: str = default_of("data_dir")
    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    test_file: Optional[str] = None
    text_column: str = default_of("text_column")
    label_column: str = default_of("label_column")
    positive_label: Optional[str] = None

    @classmethod
    def from_config(cls, config: Any) -> "DataSource":
        """The data settings of a ``TrainConfig`` (or any object with these attributes)."""
        return cls(**{item.name: getattr(config, item.name) for item in fields(cls)})

    def own_files(self) -> Optional[Dict[str, Path]]:
        """The files of each split of your own data (``validation`` only when there is one); None for IMDB."""
        named = {split: Path(path) for split, path in (("train", self.train_file), ("test", self.test_file),
                                                       ("validation", self.validation_file)) if path}
        found = None if self.train_file and self.test_file else find_split_files(self.data_dir)
        if found is None and not named:
            return None
        files = {**(found or {}), **named}
        for split in ("train", "test"):
            if split not in files:
                raise DataError(f"your own data need a {split} file: name it with --{split}-file (or put "
                                f"{split}.csv, .tsv, .jsonl or .parquet in --data-dir)")
        return files


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


def load_splits(source: DataSource, download: bool = True) -> Tuple[ReviewData, Optional[ReviewData], ReviewData]:
    """All training data, the validation data when a file gives them (else None), and the test data.

    Your own data's classes are named by the training file's labels; a label of another file that
    training never saw is a DataError naming the file and line."""
    files = source.own_files()
    if files is None:
        if source.positive_label is not None:
            raise DataError("--positive-label is for your own data; IMDB's positive class is 'positive'")
        splits = load_imdb_splits(_locate_data(source.data_dir, download), ("train", "test"))
        return splits["train"], None, splits["test"]
    train_table = _read_labelled(files["train"], source)
    names = class_names_of(train_table.labels, source.positive_label, where=str(files["train"]))
    train = encode_labels(train_table, names, files["train"])
    validation_table = _read_labelled(files["validation"], source) if "validation" in files else None
    test_table = _read_labelled(files["test"], source)
    seen = {text.strip() for text in train_table.texts}
    for split, table in (("validation", validation_table), ("test", test_table)):
        if table is not None:
            _warn_of_training_texts(table, files[split], seen, files["train"])
    validation = encode_labels(validation_table, names, files["validation"]) if validation_table is not None else None
    return train, validation, encode_labels(test_table, names, files["test"])


def _warn_of_training_texts(table: Table, path: Path, training_texts: Set[str], train_path: Path) -> None:
    """Warn when texts of ``path`` are also training texts: their scores say how well the model remembers."""
    shared = [row for text, row in zip(table.texts, table.rows) if text.strip() in training_texts]
    if shared:
        logger.warning("%d of the %d texts of %s (the first: %s) are also in %s, so its accuracy counts texts the "
                       "model trained on; remove them from one of the files for a fair score", len(shared),
                       len(table.texts), path, shared[0], train_path)


def _read_labelled(path: Path, source: DataSource) -> Table:
    return read_table(path, source.text_column, source.label_column)


def encode_labels(table: Table, class_names: Sequence[str], path: Path) -> ReviewData:
    """``table`` with its labels as indices into ``class_names`` (DataError naming the line of one that is
    not among them)."""
    return ReviewData(table.texts, label_indices(table.labels, class_names, path, table.rows), None,
                      tuple(class_names))


def split_reviews(data_dir: Union[str, Path, DataSource], validation_split: float = default_of("validation_split"),
                  seed: int = default_of("seed"), max_train_samples: Optional[int] = None,
                  max_test_samples: Optional[int] = None, download: bool = True
                  ) -> Tuple[ReviewData, ReviewData, ReviewData]:
    """The training, validation and test reviews, split as ``create_data_loaders`` splits them: the
    validation file's reviews when there is one, else a stratified, seeded share of the training data."""
    source = data_dir if isinstance(data_dir, DataSource) else DataSource(str(data_dir))
    train_all, validation, test = load_splits(source, download)
    train_all = _limit(train_all, max_train_samples, seed)
    test = _limit(test, max_test_samples, seed)
    missing = sorted(set(range(len(train_all.class_names))) - set(train_all.labels))
    if missing:
        raise DataError(f"--max-train-samples {max_train_samples} keeps no training example of the class "
                        f"{train_all.class_names[missing[0]]!r}; raise it")
    if validation is not None:
        return train_all, validation, test
    train_idx, val_idx = stratified_split(train_all.labels, validation_split, seed, train_all.class_names)
    return train_all.select(train_idx), train_all.select(val_idx), test


def _preprocessor(given: Optional[TextPreprocessor], max_vocab_size: int, min_freq: int,
                  encoding: Dict[str, Optional[str]]) -> TextPreprocessor:
    """A new preprocessor with these settings, or ``given``, whose own encoding must not be contradicted."""
    if given is None:
        return TextPreprocessor(max_vocab_size=max_vocab_size, min_freq=min_freq,
                                **{name: value for name, value in encoding.items() if value is not None})
    for name, value in encoding.items():
        if value is not None and value != getattr(given, name):
            raise ValueError(f"{name}={value!r} contradicts the given preprocessor's {name} "
                             f"{getattr(given, name)!r}; leave it out to use the preprocessor's")
    return given


def create_data_loaders(
    data_dir: Union[str, Path, DataSource],
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
    tokenizer: Optional[str] = None,
    download: bool = True,
    pin_memory: bool = False,
    preprocessor: Optional[TextPreprocessor] = None,
    num_replicas: int = 1,
    rank: int = 0,
    splits: Optional[Tuple[ReviewData, ReviewData, ReviewData]] = None,
    eval_max_length: Optional[int] = None,
) -> Tuple[DataLoader, DataLoader, DataLoader, TextPreprocessor]:
    """Load the data (IMDB is downloaded into a missing or empty folder), build the vocabulary, and return
    loaders.

    ``data_dir`` is a folder (IMDB, or your own ``train``/``test`` files) or a ``DataSource``.
    Validation is the validation file's reviews, else a stratified, seeded split of the
    training reviews; the vocabulary is built on the remaining training reviews only. ``max_train_samples`` keeps a stratified subset
    of ``train/`` before the split (for quick runs), ``max_test_samples`` likewise for
    ``test/``. Reviews are split into tokens and cut as the preprocessor says (training's to
    ``max_length``, validation's and test's to ``eval_max_length``): ``max_length``, ``eval_max_length``,
    ``truncation`` and ``tokenizer`` set those of a new one (default: ``TrainConfig``'s); pass
    a fitted ``preprocessor`` to reuse an existing vocabulary and encoding. ``splits`` are the training,
    validation and test reviews when ``split_reviews`` has read them already with these settings.
    Batches are ``(token_ids [B, T] long, lengths [B] long, labels [B] float)`` (labels are
    class indices); each loader's ``dataset.texts`` holds its reviews and ``dataset.class_names``
    the names of the classes.
    """
    check_setting("batch_size", batch_size, "batch_size")
    check_setting("validation_split", validation_split, "validation_split")
    preprocessor = _preprocessor(preprocessor, max_vocab_size, min_freq,
                                 {"max_length": max_length, "truncation": truncation, "tokenizer": tokenizer,
                                  "eval_max_length": eval_max_length})
    if splits is None:
        splits = split_reviews(data_dir, validation_split, seed, max_train_samples, max_test_samples, download)
    train, val, test = splits
    train_ids = (preprocessor.encode_batch(train.texts) if preprocessor.is_fitted
                 else preprocessor.fit_encode(train.texts))
    logger.info("data: %d train, %d validation, %d test reviews; vocabulary of %d words",
                len(train.texts), len(val.texts), len(test.texts), preprocessor.vocab_size)
    datasets = [ReviewDataset([cut(x) for x in ids], part.labels, part.texts, train.class_names)
                for ids, part, cut in
                ((train_ids, train, preprocessor.truncate),
                 (preprocessor.encode_batch(val.texts), val, preprocessor.truncate_for_prediction),
                 (preprocessor.encode_batch(test.texts), test, preprocessor.truncate_for_prediction))]
    shards = [dict(num_replicas=num_replicas, rank=rank, pad_shards=True),
              dict(num_replicas=num_replicas, rank=rank, pad_shards=False), {}]
    loaders = [
        DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed,
                                                             **shard),
                   collate_fn=collate_batch, num_workers=num_workers, pin_memory=pin_memory)
        for dataset, shuffle, shard in zip(datasets, (True, False, False), shards)
    ]
    return loaders[0], loaders[1], loaders[2], preprocessor

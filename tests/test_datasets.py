import numpy as np
import pytest
import torch

from src.data import BucketBatchSampler, collate_batch, create_data_loaders, truncate_ids
from src.data.datasets import padding_fraction
from src.exceptions import DataError
from tests.helpers import synthetic_reviews, write_imdb_tree


def test_collate_pads_to_the_batch_maximum():
    ids, lengths, labels = collate_batch([(np.array([5, 6, 7], dtype=np.int32), 1), (np.array([8], dtype=np.int32), 0)])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert ids.dtype == torch.long and lengths.tolist() == [3, 1]
    assert labels.dtype == torch.float32 and labels.tolist() == [1.0, 0.0]


def test_truncation_strategies():
    ids = np.arange(10, dtype=np.int32)
    assert truncate_ids(ids, 4, "head").tolist() == [0, 1, 2, 3]
    assert truncate_ids(ids, 8, "head_tail").tolist() == [0, 1, 4, 5, 6, 7, 8, 9]
    assert truncate_ids(ids, 20).tolist() == ids.tolist()
    assert truncate_ids(np.array([], dtype=np.int32), 5).tolist() == [1]


def test_bucket_sampler_covers_every_review_once_per_epoch_and_reshuffles():
    lengths = np.random.default_rng(0).integers(1, 500, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=3, pool_factor=4)
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(1000))
        assert len(epoch) == len(sampler) == 32
    assert first != second
    replay = BucketBatchSampler(lengths, batch_size=32, seed=3, pool_factor=4)
    assert list(replay) == first  # same seed and epoch, same order


def test_bucket_sampler_state_dict_resumes_the_epoch_order():
    lengths = np.arange(1, 301)
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=1)
    list(sampler)
    state = sampler.state_dict()
    expected = list(sampler)
    restored = BucketBatchSampler(lengths, batch_size=16, seed=99)
    restored.load_state_dict(state)
    assert list(restored) == expected


def test_bucketing_reduces_padding():
    lengths = np.random.default_rng(0).integers(10, 1000, size=5000)
    bucketed = list(BucketBatchSampler(lengths, batch_size=64, seed=0))
    random_order = np.random.default_rng(0).permutation(5000)
    random_batches = [random_order[i:i + 64] for i in range(0, 5000, 64)]
    assert padding_fraction(lengths, bucketed) < 0.05 < 0.3 < padding_fraction(lengths, random_batches)


def test_unshuffled_sampler_sorts_by_length():
    sampler = BucketBatchSampler([3, 9, 1, 7], batch_size=2, shuffle=False)
    assert list(sampler) == [[1, 3], [0, 2]]


@pytest.fixture(scope="module")
def small_loaders(imdb_tree):
    return create_data_loaders(imdb_tree, batch_size=32, max_length=100, max_train_samples=1000,
                               max_test_samples=400, validation_split=0.2, seed=7, download=False)


def test_loaders_on_real_reviews(small_loaders):
    train, val, test, processor = small_loaders
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (800, 200, 400)
    assert train.dataset.labels.sum() == 400 and val.dataset.labels.sum() == 100  # stratified
    assert test.dataset.labels.sum() == 200
    ids, lengths, labels = next(iter(train))
    assert ids.shape == (32, int(lengths.max())) and int(lengths.max()) <= 100
    assert (ids[torch.arange(32), lengths - 1] != 0).all()
    assert processor.vocab_size <= 25000 and processor.is_fitted
    # training reads 100 tokens of a review; validation and testing 200 (twice --max-length)
    assert train.dataset.lengths.max() == 100 and processor.eval_max_length == 200
    assert val.dataset.lengths.max() == test.dataset.lengths.max() == 200
    assert sum(test.dataset.lengths > 100) > 50  # real reviews: many read whole only at evaluation


def test_split_is_reproducible_and_disjoint(small_loaders, imdb_tree):
    train, val, _, _ = small_loaders
    again = create_data_loaders(imdb_tree, batch_size=32, max_length=100, max_train_samples=1000,
                                max_test_samples=400, validation_split=0.2, seed=7, download=False)
    fingerprint = lambda ds: sorted(tuple(x.tolist()) for x in ds.token_ids)  # noqa: E731
    assert fingerprint(again[1].dataset) == fingerprint(val.dataset)
    assert not set(fingerprint(train.dataset)) & set(fingerprint(val.dataset))
    other = create_data_loaders(imdb_tree, batch_size=32, max_length=100, max_train_samples=1000,
                                max_test_samples=400, validation_split=0.2, seed=8, download=False)
    assert fingerprint(other[1].dataset) != fingerprint(val.dataset)


def test_vocabulary_comes_from_the_training_part_only(tmp_path):
    reviews = synthetic_reviews(20)
    for label, texts in reviews.items():  # one word of its own in every review
        reviews[label] = [f"{text} only{label}{i}" for i, text in enumerate(texts)]
    write_imdb_tree(tmp_path, {"train": reviews, "test": synthetic_reviews(5, seed=1)})
    train, val, _, processor = create_data_loaders(tmp_path, batch_size=4, validation_split=0.25, seed=0)
    train_words = {w for ids in train.dataset.token_ids for w in processor.decode(ids).split()}
    assert set(processor.itos[2:]) == train_words and "<unk>" not in train_words
    assert all(processor.decode(ids).endswith("<unk>") for ids in val.dataset.token_ids)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"max_length": 0}, {"validation_split": 1.0},
                                    {"validation_split": 0.0}, {"truncation": "middle"}])
def test_invalid_loader_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        create_data_loaders(tmp_path, **kwargs)


def test_too_few_reviews_to_split(tmp_path):
    write_imdb_tree(tmp_path, {"train": {"pos": ["good"], "neg": ["bad"]}, "test": {"pos": ["ok"], "neg": ["no"]}})
    with pytest.raises(DataError, match="cannot hold out"):
        create_data_loaders(tmp_path, download=False)


def test_missing_data_without_download(tmp_path):
    with pytest.raises(DataError, match="holds no IMDB data"):
        create_data_loaders(tmp_path, download=False)


def test_worker_processes_give_the_same_batches(tmp_path):
    write_imdb_tree(tmp_path, {"train": synthetic_reviews(30), "test": synthetic_reviews(10, seed=1)})
    in_process = create_data_loaders(tmp_path, batch_size=8, seed=1)[0]
    with_workers = create_data_loaders(tmp_path, batch_size=8, seed=1, num_workers=2)[0]
    for (a, la, ya), (b, lb, yb) in zip(in_process, with_workers):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ya, yb)


def test_sharded_sampler_splits_every_epoch_between_ranks():
    lengths = np.random.default_rng(1).integers(1, 300, size=1000)
    full = list(BucketBatchSampler(lengths, batch_size=32, seed=5))
    shards = [list(BucketBatchSampler(lengths, batch_size=32, seed=5, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 == len({len(BucketBatchSampler(lengths, 32, num_replicas=3, rank=r))
                                                      for r in range(3)})
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(1000))  # every review, a few batches twice to even out the shards
    assert sorted(map(tuple, full)) == sorted(set(tuple(b) for shard in shards for b in shard))
    evaluation = [list(BucketBatchSampler(lengths, 32, shuffle=False, num_replicas=3, rank=r, pad_shards=False))
                  for r in range(3)]
    assert sorted(i for shard in evaluation for batch in shard for i in batch) == list(range(1000))


def test_sharding_fewer_batches_than_ranks_still_feeds_every_rank():
    shards = [list(BucketBatchSampler([5, 3, 9], batch_size=8, num_replicas=4, rank=r)) for r in range(4)]
    assert [len(s) for s in shards] == [1, 1, 1, 1]

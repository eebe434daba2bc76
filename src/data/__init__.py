"""IMDB data: download, loading, preprocessing, datasets and loaders."""

from src.data.datasets import BucketBatchSampler, ReviewDataset, collate_batch
from src.data.imdb import IMDB_URL, ReviewData, download_imdb, load_imdb, load_imdb_splits, load_unlabeled_reviews
from src.data.loaders import create_data_loaders, stratified_split
from src.data.preprocessing import TextPreprocessor, truncate_ids

__all__ = [
    "IMDB_URL", "BucketBatchSampler", "ReviewData", "ReviewDataset", "TextPreprocessor",
    "collate_batch", "create_data_loaders", "download_imdb", "load_imdb", "load_imdb_splits", "load_unlabeled_reviews",
    "stratified_split", "truncate_ids",
]

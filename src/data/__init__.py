"""The data: IMDB (download, loading) and your own files, preprocessing, datasets and loaders."""

from src.data.datasets import BucketBatchSampler, ReviewDataset, collate_batch
from src.data.imdb import IMDB_URL, ReviewData, download_imdb, load_imdb, load_imdb_splits, load_unlabeled_reviews
from src.data.loaders import DataSource, create_data_loaders, load_splits, split_reviews, stratified_split
from src.data.tables import read_table, read_texts
from src.data.preprocessing import TextPreprocessor, truncate_ids

__all__ = [
    "IMDB_URL", "BucketBatchSampler", "DataSource", "ReviewData", "ReviewDataset", "TextPreprocessor",
    "collate_batch", "create_data_loaders", "download_imdb", "load_imdb", "load_imdb_splits", "load_splits",
    "load_unlabeled_reviews", "read_table", "read_texts", "split_reviews", "stratified_split", "truncate_ids",
]

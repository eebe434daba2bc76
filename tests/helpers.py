"""Test helpers: the shared real data, a loopback HTTP server, tiny synthetic data sets."""

from __future__ import annotations

import http.server
import os
import re
import signal
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LSTM_SENTIMENT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IMDB_ARCHIVE = SHARED_DATA / "imdb" / "aclImdb_v1.tar.gz"
IMDB_SHA256 = "a65dbf52946dedca7b24fc4fab0a504c4c347e227406e021c78cc2e33b246096"
GLOVE_ZIP = SHARED_DATA / "glove" / "glove.6B.zip"
SUBSET_IDS = 1000  # the imdb_tree fixture holds reviews 0-999 of each split and label: 4,000 real reviews


class FileServer:
    """Serve files from a folder on 127.0.0.1 (port chosen by the OS), with HTTP Range.

    ``requests`` records (path, Range header) of every request, so tests can check
    whether the network was touched and whether a download resumed.
    """

    def __init__(self, root: Path, truncate_at: Optional[Dict[str, int]] = None):
        self.root = Path(root)
        self.requests: List[tuple] = []
        self.truncate_at = truncate_at or {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                server._answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _answer(self, handler) -> None:
        path = self.root / handler.path.lstrip("/")
        if not path.is_file():
            handler.send_error(404)
            return
        data = path.read_bytes()
        start, status = 0, 200
        match = re.match(r"bytes=(\d+)-$", handler.headers.get("Range") or "")
        if match:
            start, status = int(match.group(1)), 206
            if start >= len(data):
                handler.send_error(416)
                return
        body = data[start:]
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        cut = self.truncate_at.get(handler.path)
        handler.wfile.write(body if cut is None else body[:cut])

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_imdb_tree(root: Path, reviews: Dict[str, Dict[str, List[str]]]) -> Path:
    """Write ``{split: {"pos"|"neg": [texts]}}`` as an aclImdb tree under ``root``."""
    for split, by_label in reviews.items():
        for label, texts in by_label.items():
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(texts):
                rating = 8 if label == "pos" else 2
                (folder / f"{i}_{rating}.txt").write_text(text, encoding="utf-8")
    return root


def synthetic_reviews(count: int, seed: int = 0) -> Dict[str, List[str]]:
    """Separable toy reviews: positive ones use 'good' words, negative ones 'bad' words."""
    rng = np.random.default_rng(seed)
    good, bad, filler = ["great", "superb", "loved"], ["awful", "boring", "hated"], ["the", "film", "was", "a", "plot"]
    out: Dict[str, List[str]] = {"pos": [], "neg": []}
    for label, words in (("pos", good), ("neg", bad)):
        for _ in range(count):
            length = int(rng.integers(3, 30))
            tokens = rng.choice(filler + words * 2, size=length).tolist()
            out[label].append(" ".join(tokens))
    return out


def synthetic_loaders(count: int = 240, batch_size: int = 16, seed: int = 0, vocab_size: int = 30):
    """Separable token-id data: positive reviews contain token 2, negative ones token 3.

    Returns ``(train_loader, val_loader)`` built from the project's own dataset,
    bucketing sampler and collate function.
    """
    from torch.utils.data import DataLoader

    from src.data.datasets import BucketBatchSampler, ReviewDataset, collate_batch

    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for index in range(count):
        label = index % 2
        review = rng.integers(4, vocab_size, size=int(rng.integers(4, 20))).astype(np.int32)
        review[rng.integers(0, len(review), size=2)] = 2 if label else 3
        ids.append(review)
        labels.append(label)
    split = count * 3 // 4
    loaders = []
    for part, shuffle in ((slice(0, split), True), (slice(split, count), False)):
        dataset = ReviewDataset(ids[part], labels[part])
        sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle=shuffle, seed=seed, pool_factor=2)
        loaders.append(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch))
    return loaders[0], loaders[1]


def tiny_model(vocab_size: int = 30, **overrides):
    from src.models.lstm_model import LSTMClassifier

    settings = dict(vocab_size=vocab_size, embedding_dim=8, hidden_dim=8, n_layers=1, dropout=0.1)
    settings.update(overrides)
    return LSTMClassifier(**settings)


def make_trainer(run_dir: Path, seed: int = 0, data_seed: Optional[int] = None, **kwargs):
    """A tiny model on ``synthetic_loaders`` with ``create_trainer`` (learning rate 0.01, no progress bar)."""
    from src.training import create_trainer
    from src.utils.seed import set_seed

    set_seed(seed)
    train_loader, val_loader = synthetic_loaders(seed=seed if data_seed is None else data_seed)
    model = tiny_model(**kwargs.pop("model", {}))
    kwargs.setdefault("learning_rate", 0.01)
    return create_trainer(model, train_loader, val_loader, checkpoint_dir=run_dir, progress=False, **kwargs)


def assert_resume_repeats_training(build, folder: Path, epochs: int = 3):
    """A trainer from ``build(run_dir)`` trained ``epochs`` epochs straight, and another trained one epoch and
    resumed from its checkpoint for the rest, end with the same weights; returns the straight one."""
    import torch

    straight = build(folder / "straight")
    straight.train(epochs=epochs)
    build(folder / "parts").train(epochs=1)
    resumed = build(folder / "parts")
    resumed.resume_training(folder / "parts" / "checkpoint_epoch_001.pt", additional_epochs=epochs - 1)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    return straight


def write_review_csvs(imdb_tree: Path, folder: Path, train_count: int, test_count: int) -> Path:
    """A random subset of the real reviews as train.csv / test.csv (much quicker to load than the tree)."""
    import csv
    import random

    from src.data import load_imdb

    for split, count in (("train", train_count), ("test", test_count)):
        reviews = load_imdb(imdb_tree, split)
        picked = random.Random(0).sample(range(len(reviews.texts)), count)
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((reviews.texts[i], reviews.labels[i]) for i in picked)
    return folder


def train_script_arguments(data: Path, output_dir: Path, run_dir: Path, *extra: str) -> List[str]:
    """``train_model.py`` and its data, model-directory and run-directory flags, for a subprocess run."""
    return ["src/training/train_model.py", "--data-dir", str(data), "--output-dir", str(output_dir),
            "--checkpoint-dir", str(run_dir), *extra]



def write_table(path: Path, texts: List[str], labels: List[object], text_column: str = "text",
                label_column: str = "label") -> Path:
    """``texts`` and ``labels`` as a table whose format follows ``path``'s suffix (.csv, .tsv, .jsonl, .parquet)."""
    import csv
    import json

    suffix = path.suffix
    if suffix == ".parquet":
        import pandas as pd

        pd.DataFrame({text_column: texts, label_column: labels}).to_parquet(path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({text_column: t, label_column: l}) + "\n" for t, l in zip(texts, labels)),
                        encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerow([text_column, label_column])
            writer.writerows(zip(texts, labels))
    return path


def write_rating_tables(imdb_tree: Path, folder: Path, suffix: str = ".csv") -> Path:
    """A real four-class task from the reviews' star ratings (as ``bench/accuracy.py --task ratings``): train and
    test files."""
    from bench.accuracy import RATING_CLASSES
    from src.data import load_imdb

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        reviews = load_imdb(imdb_tree, split)
        write_table(folder / f"{split}{suffix}", reviews.texts, [RATING_CLASSES[r] for r in reviews.ratings])
    return folder


_TRAINED_MODELS: Dict[str, Path] = {}


def tiny_trained_model(tmp_path_factory) -> Path:
    """A model directory trained by the pipeline on ``synthetic_reviews`` ('great', 'superb', 'loved' make a
    review positive; 'awful', 'boring', 'hated' negative), with all the files training writes; trained once
    per test session (a few seconds) and shared by the modules that ask for it."""
    if "tiny" not in _TRAINED_MODELS:
        from src.config import TrainConfig
        from src.training.pipeline import run_training

        root = tmp_path_factory.mktemp("tiny-trained")
        tree = write_imdb_tree(root / "data", {"train": synthetic_reviews(150), "test": synthetic_reviews(40, seed=1)})
        run_training(TrainConfig(data_dir=str(tree), output_dir=str(root / "model"), checkpoint_dir=str(root / "run"),
                                 epochs=3, embedding_dim=16, hidden_dim=8, n_layers=1, max_length=40,
                                 eval_max_length=40, batch_size=16, learning_rate=0.01, pretrain_lm_epochs=0,
                                 quiet=True, tensorboard=False))
        _TRAINED_MODELS["tiny"] = root / "model"
    return _TRAINED_MODELS["tiny"]


class ServedApp:
    """An app of ``src.inference.serve.create_app`` served by uvicorn on 127.0.0.1 (a free port) in a background
    thread, as ``python -m src.inference.serve`` serves it."""

    def __init__(self, app):
        from src.inference.serve import bind_socket, make_server

        self.app = app
        self.socket = bind_socket("127.0.0.1", 0)
        self.server = make_server(app, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def __enter__(self) -> "ServedApp":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


def interrupt_at(trainer, step_count, signum=signal.SIGTERM):
    """Send ``signum`` to this process during the ``step_count``-th training step."""
    original, calls = trainer.train_step, {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step_count:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    trainer.train_step = step

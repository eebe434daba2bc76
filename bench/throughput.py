"""Training throughput: this pipeline's training step against a textbook reference loop.

Both train the same size of model (embedding 300, hidden 128, 2 layers, bidirectional,
dropout 0.3, batch 64, max_length 400, Adam, clipping 1.0) on the same real IMDB
training reviews, in this one process, alternating in rounds so that both see the
same machine load:

* pipeline: its bucketing sampler, collate function, LSTMClassifier and Trainer step;
* reference: random batches padded to the batch maximum, ``pack_padded_sequence``,
  and a classifier on the final hidden state ``h_n``, as in the common tutorials.

Counts real (non-pad) tokens. The last line is one JSON object.

    .venv/bin/python bench/throughput.py --data-dir data/imdb [--steps 24]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import BucketBatchSampler, ReviewDataset, TextPreprocessor, collate_batch, load_imdb  # noqa: E402
from src.data import truncate_ids  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.training import create_trainer  # noqa: E402

EMBEDDING, HIDDEN, LAYERS, DROPOUT, BATCH, MAX_LENGTH = 300, 128, 2, 0.3, 64, 400


class TutorialLSTM(nn.Module):
    """The usual tutorial model: packed sequences, classifier on the last hidden state."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, EMBEDDING, padding_idx=0)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, bidirectional=True, dropout=DROPOUT, batch_first=True)
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(2 * HIDDEN, 1)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.fc(self.dropout(torch.cat([hidden[-2], hidden[-1]], dim=1))).squeeze(1)


def reference_batches(dataset: ReviewDataset, seed: int):
    order = np.random.default_rng(seed).permutation(len(dataset))
    for start in range(0, len(order) - BATCH + 1, BATCH):
        yield collate_batch([dataset[i] for i in order[start: start + BATCH]])


def reference_step(model, optimizer, criterion, batch) -> int:
    ids, lengths, labels = batch
    optimizer.zero_grad()
    loss = criterion(model(ids, lengths), labels)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return int(lengths.sum())


def timed_tokens(step_function, batches, count: int):
    tokens, started = 0, time.perf_counter()
    for _ in range(count):
        tokens += step_function(next(batches))
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--steps", type=int, default=24, help="timed pipeline steps (reference: a quarter of them)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reviews", type=int, default=8000, help="training reviews to draw batches from")
    args = parser.parse_args()
    torch.manual_seed(0)

    reviews = load_imdb(args.data_dir, "train").select(np.random.default_rng(0).permutation(25000)[: args.reviews])
    processor = TextPreprocessor(max_vocab_size=25000)
    dataset = ReviewDataset([truncate_ids(x, MAX_LENGTH) for x in processor.fit_encode(reviews.texts)], reviews.labels)

    sampler = BucketBatchSampler(dataset.lengths, BATCH, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch)
    model = LSTMClassifier(processor.vocab_size, EMBEDDING, HIDDEN, n_layers=LAYERS, dropout=DROPOUT)
    trainer = create_trainer(model, loader, loader, device="cpu", progress=False, checkpoint_dir=tempfile.mkdtemp(prefix="throughput-"))
    model.train()

    def pipeline_step(batch):
        trainer.train_step(*batch)
        return int(batch[1].sum())

    reference = TutorialLSTM(processor.vocab_size).train()
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=0.001)
    ref_step = lambda batch: reference_step(reference, ref_optimizer, nn.BCEWithLogitsLoss(), batch)  # noqa: E731

    ours_batches, ref_batches = iter(loader), reference_batches(dataset, seed=0)
    timed_tokens(pipeline_step, ours_batches, 2)  # warm-up
    timed_tokens(ref_step, ref_batches, 1)
    ours_tokens = ours_seconds = ref_tokens = ref_seconds = 0.0
    for _ in range(args.rounds):
        tokens, seconds = timed_tokens(pipeline_step, ours_batches, max(1, args.steps // args.rounds))
        ours_tokens, ours_seconds = ours_tokens + tokens, ours_seconds + seconds
        tokens, seconds = timed_tokens(ref_step, ref_batches, max(1, args.steps // (4 * args.rounds)))
        ref_tokens, ref_seconds = ref_tokens + tokens, ref_seconds + seconds
    result = {"pipeline_tokens_per_s": round(ours_tokens / ours_seconds),
              "reference_tokens_per_s": round(ref_tokens / ref_seconds),
              "speedup": round((ours_tokens / ours_seconds) / (ref_tokens / ref_seconds), 2),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

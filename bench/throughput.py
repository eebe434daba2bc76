"""Training throughput: this pipeline's training step against a textbook loop, and against the machine.

Both loops train a model of the default size, built from ``TrainConfig()``
(embedding 300, hidden 128, 2 bidirectional layers, dropout 0.3, word dropout 0.3,
batch 64, reviews cut to 400 tokens by ``head_tail``; Adam, clipping 1.0), or of a
settings file's (``--config configs/recommended.yaml``: its sizes, and its
adversarial training in the pipeline's step), on the same real IMDB training
reviews, in this one process. The defaults' step is timed without adversarial
training in every precision, although the defaults train with it where the CPU
trains in bfloat16 (``--adversarial-eps 1`` times that step too):

* pipeline: its bucketing sampler, collate function, LSTMClassifier and Trainer step;
* reference: the same reviews in random batches padded to the batch maximum,
  ``pack_padded_sequence`` through one ``nn.LSTM``, and a classifier on the final
  hidden state ``h_n``, as in the common tutorials.

Where the CPU has bfloat16 instructions, the pipeline's step is also timed under
bfloat16 autocast (``--precision bfloat16``, what ``auto`` picks there). Each round
trains every batch of the pool once with each loop (in turn, and in reversed order
every other round, so all see the same machine load and none always follows the
same other), and the JSON line gives the median and the
range of the rounds' real (non-pad) tokens per second. It also measures the
machine's matrix-multiply rate on the LSTM's shapes, in float32 and bfloat16, and
states what fraction of it the step reaches, given the model's FLOPs per real
token. ``--variant SETTING=VALUE`` (repeatable) also times the float32 step of the
same model with one model setting changed, in the same rounds, and gives its rate
against the unchanged step's (``variant_ratio``). ``--threads N`` (repeatable) also
times the steps of each precision with torch's intra-op threads set to N instead of
all cores (``thread_ratio``); OpenMP's own settings (``OMP_WAIT_POLICY``,
``OMP_PROC_BIND``, ...) are a matter of the process's environment: compare runs with
and without them by their ``speedup``. Name the CPU with every number you quote: the
JSON line carries it.

    .venv/bin/python bench/throughput.py --data-dir data/imdb [--batches 32 --rounds 3]
    .venv/bin/python bench/throughput.py --data-dir data/imdb --config configs/recommended.yaml --variant embedding_dim=100
    .venv/bin/python bench/throughput.py --data-dir data/imdb --variant embedding_dropout=0 --threads 1
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accuracy import parse_settings  # noqa: E402
from src.config import TrainConfig  # noqa: E402
from src.data import BucketBatchSampler, ReviewDataset, TextPreprocessor, collate_batch, load_imdb  # noqa: E402
from src.models.lstm_model import LSTMClassifier, LSTMConfig  # noqa: E402
from src.training import create_trainer  # noqa: E402
from src.training.precision import cpu_training_dtype  # noqa: E402
from src.training.train_model import read_config_file  # noqa: E402
from src.utils.device import cpu_has_native_bfloat16  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402


class TutorialLSTM(nn.Module):
    """The usual tutorial model at the same sizes: packed sequences, classifier on the last hidden state."""

    def __init__(self, vocab_size: int, cfg: TrainConfig):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(cfg.embedding_dim, cfg.hidden_dim, cfg.n_layers, bidirectional=cfg.bidirectional,
                            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(2 * cfg.hidden_dim, 1)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.fc(self.dropout(torch.cat([hidden[-2], hidden[-1]], dim=1))).squeeze(1)


def matmul_gflops(rows: int, inner: int, cols: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Measured GFLOP/s of [rows, inner] @ [inner, cols] in ``dtype`` (best of repeated bursts)."""
    a, b = torch.randn(rows, inner).to(dtype), torch.randn(inner, cols).to(dtype)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * rows * inner * cols / (time.perf_counter() - started))
    return best / 1e9


def training_flops_per_token(cfg: TrainConfig) -> float:
    """FLOPs of one training step per real token, counting the LSTMs' matrix multiplies: for each layer
    and direction 2 * 4H * (input + H) forward, twice that backward; twice all that with adversarial
    training (a second forward and backward, on the perturbed reviews)."""
    directions = 2 if cfg.bidirectional else 1
    total = 0
    for layer in range(cfg.n_layers):
        inputs = cfg.embedding_dim if layer == 0 else cfg.hidden_dim * directions
        total += directions * 2 * 4 * cfg.hidden_dim * (inputs + cfg.hidden_dim)
    return 3.0 * total * (2 if cfg.adversarial_eps else 1)


def training_pool(data_dir: str, batches: int, cfg: TrainConfig) -> Tuple[ReviewDataset, int, DataLoader]:
    """``batches`` batches' worth of real IMDB training reviews (a fixed draw), encoded and cut as ``cfg``
    says, with the vocabulary's size and a loader that buckets them as training does."""
    reviews = load_imdb(data_dir, "train")
    pool = np.random.default_rng(0).permutation(len(reviews.texts))[: batches * cfg.batch_size]
    reviews = reviews.select(pool)
    processor = TextPreprocessor(max_length=cfg.max_length, truncation=cfg.truncation)
    dataset = ReviewDataset([processor.truncate(x) for x in processor.fit_encode(reviews.texts)], reviews.labels)
    loader = DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset.lengths, cfg.batch_size, seed=0),
                        collate_fn=collate_batch)
    return dataset, processor.vocab_size, loader


def reference_batches(dataset: ReviewDataset, batch_size: int, seed: int) -> List[tuple]:
    order = np.random.default_rng(seed).permutation(len(dataset))
    return [collate_batch([dataset[i] for i in order[start: start + batch_size]])
            for start in range(0, len(order), batch_size)]


def tokens_per_second(step: Callable[[tuple], None], batches: Iterable[tuple]) -> float:
    tokens, started = 0, time.perf_counter()
    for batch in batches:
        step(batch)
        tokens += int(batch[1].sum())
    return tokens / (time.perf_counter() - started)


def profile_shares(step: Callable[[tuple], None], batches: List[tuple], top: int = 8) -> Dict[str, float]:
    """The share of the step's CPU time that each of its ``top`` costliest operators takes by itself (its own
    time, not its callees'): where a faster step would have to come from."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        for batch in batches:
            step(batch)
    events = profiled.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
    return {event.key: round(event.self_cpu_time_total / total, 3) for event in ranked}


def summary(rates: List[float]) -> Dict[str, float]:
    return {"median": round(statistics.median(rates)), "min": round(min(rates)), "max": round(max(rates))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--batches", type=int, default=32, help="batches in the pool, trained once per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--adversarial-eps", type=float, default=0.0,
                        help="also time the step with adversarial training at this eps, in each precision")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the float32 step once over the pool: each costliest operator's share")
    parser.add_argument("--config", help="settings file whose model, batch and adversarial training are timed "
                                         "(default: the defaults)")
    parser.add_argument("--variant", action="append", default=[], metavar="SETTING=VALUE",
                        help="also time the float32 step with this setting of the model or its step changed "
                             "(repeatable); the reviews and batches stay the same")
    parser.add_argument("--threads", action="append", type=int, default=[], metavar="N",
                        help="also time each precision's step with torch using N threads (repeatable)")
    args = parser.parse_args()
    settings = read_config_file(args.config) if args.config else {}
    cfg = TrainConfig.from_settings(settings)
    torch.manual_seed(0)

    dataset, vocab_size, loader = training_pool(args.data_dir, args.batches, cfg)
    ours = list(loader)
    precisions = ["float32", "bfloat16"] if cpu_has_native_bfloat16() else ["float32"]
    steps = {precision: pipeline_step(vocab_size, cfg, loader, precision, cfg.adversarial_eps)
             for precision in precisions}
    for variant, changed in variant_configs(settings, args.variant).items():
        steps[f"float32 {variant}"] = pipeline_step(vocab_size, changed, loader, "float32", changed.adversarial_eps)
    if args.adversarial_eps:
        steps.update({f"{precision}_adversarial": pipeline_step(vocab_size, cfg, loader, precision,
                                                                args.adversarial_eps) for precision in precisions})
    steps.update({f"{precision} threads={threads}": with_threads(steps[precision], threads)
                  for threads in args.threads for precision in precisions})
    reference = TutorialLSTM(vocab_size, cfg).train()
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=cfg.learning_rate)
    criterion = nn.BCEWithLogitsLoss()

    def reference_step(batch):
        batch_ids, lengths, labels = batch
        ref_optimizer.zero_grad()
        criterion(reference(batch_ids, lengths), labels).backward()
        nn.utils.clip_grad_norm_(reference.parameters(), cfg.gradient_clip)
        ref_optimizer.step()

    theirs = reference_batches(dataset, cfg.batch_size, seed=0)
    for step in steps.values():
        tokens_per_second(step, ours[:2])  # warm-up
    tokens_per_second(reference_step, theirs[:1])
    our_rates, their_rates = {precision: [] for precision in steps}, []
    for round_index in range(args.rounds):  # in turn, in reversed order every other round
        for name in (list(steps) + [None])[:: 1 if round_index % 2 == 0 else -1]:
            if name is None:
                their_rates.append(tokens_per_second(reference_step, theirs))
            else:
                our_rates[name].append(tokens_per_second(steps[name], ours))
    extra = {"float32_step_self_cpu_share": profile_shares(steps["float32"], ours)} if args.profile else {}
    if args.variant:
        base = statistics.median(our_rates["float32"])
        extra["variant_ratio"] = {name: round(statistics.median(our_rates[f"float32 {name}"]) / base, 3)
                                  for name in args.variant}
    if args.threads:
        extra["thread_ratio"] = {f"{precision} threads={threads}": round(
            statistics.median(our_rates[f"{precision} threads={threads}"]) / statistics.median(our_rates[precision]),
            3) for threads in args.threads for precision in precisions}
    report(cfg, our_rates, their_rates, len(ours), len(dataset), extra)


def with_threads(step: Callable[[tuple], None], threads: int) -> Callable[[tuple], None]:
    """``step`` run with torch's intra-op thread count set to ``threads`` (restored after each batch)."""
    def threaded(batch: tuple) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            step(batch)
        finally:
            torch.set_num_threads(before)
    return threaded


def variant_configs(settings: Dict[str, Any], variants: List[str]) -> Dict[str, TrainConfig]:
    """Each ``--variant SETTING=VALUE`` -> the config of ``settings`` with that one setting changed."""
    return {variant: TrainConfig.from_settings({**settings, **parse_settings([variant])}) for variant in variants}


def pipeline_step(vocab_size: int, cfg: TrainConfig, loader: DataLoader, precision: str,
                  adversarial_eps: Optional[float] = 0.0) -> Callable[[tuple], None]:
    """The Trainer's step on a fresh model of ``cfg``'s sizes (seed 0) computing in ``precision``; without
    adversarial training where ``adversarial_eps`` is 0 or None (the defaults' machine-dependent choice)."""
    torch.manual_seed(0)
    model = LSTMClassifier.from_config(LSTMConfig.from_settings(cfg, vocab_size)).train()
    trainer = create_trainer(model, loader, loader, device="cpu", progress=False, precision=precision,
                             adversarial_eps=adversarial_eps or 0.0,
                             checkpoint_dir=tempfile.mkdtemp(prefix="throughput-"))
    return lambda batch: trainer.train_step(*batch)


def report(cfg: TrainConfig, our_rates: Dict[str, List[float]], their_rates: List[float], batches: int,
           reviews: int, extra: Dict[str, object]) -> None:
    """One JSON line: each precision's and the reference's tokens/s, the ratios, and each step against the
    matmul limit of its precision; ``precision`` names the one ``--precision auto`` trains in here."""
    hidden4 = 4 * cfg.hidden_dim
    rows = cfg.batch_size * 256  # the input projection of a batch of 256-token reviews
    gemm = {"float32": matmul_gflops(rows, cfg.embedding_dim, hidden4, torch.float32),
            "bfloat16": matmul_gflops(rows, cfg.embedding_dim, hidden4, torch.bfloat16),
            "recurrent_float32": matmul_gflops(cfg.batch_size, cfg.hidden_dim, hidden4, torch.float32)}
    flops = training_flops_per_token(cfg)
    reference = statistics.median(their_rates)
    print(json.dumps({
        "pipeline_tokens_per_s": {precision: summary(rates) for precision, rates in our_rates.items()},
        "reference_tokens_per_s": summary(their_rates),
        "speedup": {precision: round(statistics.median(rates) / reference, 2) for precision, rates in our_rates.items()},
        "fraction_of_matmul_limit": {precision: round(statistics.median(rates) * flops / (gemm[precision] * 1e9), 3)
                                     for precision, rates in our_rates.items() if precision in gemm},
        "precision": "bfloat16" if cpu_training_dtype("auto") is not None else "float32",
        "training_mflop_per_token": round(flops / 1e6, 2),
        "matmul_gflop_per_s": {k: round(v, 1) for k, v in gemm.items()},
        "batches_per_round": batches, "reviews": reviews, "rounds": len(their_rates), **extra, **cpu_facts()}))


if __name__ == "__main__":
    main()

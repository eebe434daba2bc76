"""The within-length reversal of the backward direction: ``gather`` against ``index_select``, side by side.

``reverse_within_length`` reverses each review of a [B, T, D] batch in its real
steps. It used to ``gather`` along T with an index expanded over D; it now picks
whole rows of the flattened [B * T, D] tensor with ``index_select``. This bench
times both in one process, alternating: the operation alone (forward, and
forward with its gradient) at a training batch's shape and at a prediction
batch's, and the default model's whole training step and forward pass (built
from ``TrainConfig()`` as in ``bench/throughput.py``) with each, in float32 and,
where the CPU has bfloat16 instructions, under bfloat16 autocast. Last line:
one JSON object; the ratios are old time / new time.

    .venv/bin/python bench/reversal.py --data-dir data/imdb [--batches 16 --rounds 3]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import TrainConfig  # noqa: E402
from src.models import lstm_model  # noqa: E402
from src.utils.device import cpu_has_native_bfloat16  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from bench.throughput import pipeline_step, summary, tokens_per_second, training_pool  # noqa: E402

NEW = lstm_model.reverse_within_length
SHAPES = {"training_batch": (64, 400, 256), "prediction_batch": (128, 230, 256)}  # [B, T, 2 x hidden]


def gather_reversal(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The earlier implementation: ``gather`` along T with the index expanded over D."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
    last = (lengths.to(x.device) - 1).unsqueeze(1)  # [B, 1]
    index = torch.where(steps <= last, last - steps, steps)  # [B, T]
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def milliseconds(work: Callable[[], None], repeats: int) -> float:
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return 1000 * (time.perf_counter() - started) / repeats


def operation(dtype: torch.dtype, repeats: int) -> Dict[str, Dict[str, float]]:
    """Each shape: old and new milliseconds, forward and forward + backward, and their ratios."""
    result = {}
    for name, (batch, steps, width) in SHAPES.items():
        x = torch.randn(batch, steps, width).to(dtype).requires_grad_()
        lengths = torch.randint(steps // 5, steps + 1, (batch,))
        lengths[0] = steps
        grad = torch.randn(batch, steps, width).to(dtype)
        if not torch.equal(gather_reversal(x, lengths), NEW(x, lengths)):
            raise AssertionError("the two reversals disagree")
        times = {}
        for label, reverse in (("gather", gather_reversal), ("index_select", NEW)):
            with torch.no_grad():
                times[f"{label}_forward_ms"] = milliseconds(lambda: reverse(x, lengths), repeats)
            times[f"{label}_with_gradient_ms"] = milliseconds(lambda: reverse(x, lengths).backward(grad), repeats)
        result[name] = {**{key: round(value, 2) for key, value in times.items()},
                        "forward_ratio": round(times["gather_forward_ms"] / times["index_select_forward_ms"], 2),
                        "with_gradient_ratio": round(times["gather_with_gradient_ms"]
                                                     / times["index_select_with_gradient_ms"], 2)}
    return result


def with_reversal(reverse: Callable, work: Callable[[], float]) -> float:
    lstm_model.reverse_within_length = reverse
    try:
        return work()
    finally:
        lstm_model.reverse_within_length = NEW


def whole_model(data_dir: str, batches: int, rounds: int, precision: str) -> Dict[str, object]:
    """Real tokens/s of the default model's training step and forward pass with each reversal."""
    cfg = TrainConfig()
    _, vocab_size, loader = training_pool(data_dir, batches, cfg)
    pool = list(loader)
    step = pipeline_step(vocab_size, cfg, loader, precision)
    model = lstm_model.LSTMClassifier.from_config(lstm_model.LSTMConfig.from_settings(cfg, vocab_size))
    model.eval()
    dtype = torch.bfloat16 if precision == "bfloat16" else None

    def forward(batch: tuple) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            model(batch[0], batch[1])

    rates: Dict[str, List[float]] = {}
    for _ in range(rounds):
        for label, reverse in (("gather", gather_reversal), ("index_select", NEW)):
            for part, work in (("training_step", step), ("forward", forward)):
                rate = with_reversal(reverse, lambda: tokens_per_second(work, pool))
                rates.setdefault(f"{part}_{label}", []).append(rate)
    result: Dict[str, object] = {key: summary(values) for key, values in rates.items()}
    for part in ("training_step", "forward"):
        result[f"{part}_ratio"] = round(statistics.median(rates[f"{part}_index_select"])
                                        / statistics.median(rates[f"{part}_gather"]), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--batches", type=int, default=16, help="training batches in the pool, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the operation alone")
    args = parser.parse_args()
    torch.manual_seed(0)
    precisions = ["float32", "bfloat16"] if cpu_has_native_bfloat16() else ["float32"]
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    result = {precision: {"operation": operation(dtypes[precision], args.repeats),
                          "default_model_tokens_per_s": whole_model(args.data_dir, args.batches, args.rounds, precision)}
              for precision in precisions}
    print(json.dumps({**result, "batches": args.batches, "rounds": args.rounds, **cpu_facts()}))


if __name__ == "__main__":
    main()

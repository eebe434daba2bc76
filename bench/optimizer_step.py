"""The optimizer's share of a training step, and what Adam's faster implementations would save.

PyTorch's Adam has three implementations on the CPU: a loop over the parameters (its default there),
``foreach`` (multi-tensor operations) and ``fused`` (one kernel for the whole update, torch >= 2.4).
This bench builds the default model (``TrainConfig()``, with a full vocabulary of ``max_vocab_size``
words, so the embedding is as large as in training), gives each implementation its own copy of the
trainable parameters with the same gradients, and times ``step()`` with the implementations
alternating (median after warm-up). In the same process it times the pipeline's float32 training step
(the Trainer's, with the Adam that ``build_optimizer`` picks: the fused one where torch has it) of that
model on real IMDB training reviews, bucketed as in training.
The JSON line gives each implementation's milliseconds per step, that as a share of a training step,
and how far its parameters ended from the loop's; it names the CPU.

    .venv/bin/python bench/optimizer_step.py --data-dir data/imdb [--batches 8 --steps 30]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import TrainConfig  # noqa: E402
from src.models.lstm_model import LSTMClassifier, LSTMConfig  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from bench.throughput import pipeline_step, training_pool  # noqa: E402

IMPLEMENTATIONS = {"for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
Setup = Tuple[List[torch.Tensor], torch.optim.Optimizer]


def adam_setups(model: nn.Module, cfg: TrainConfig, seed: int = 0) -> Dict[str, Setup]:
    """Per implementation: a copy of ``model``'s trainable parameters, gradients the same for all (random,
    of a trained model's scale), and an Adam over them with ``cfg``'s settings."""
    generator = torch.Generator().manual_seed(seed)
    trainable = [p.detach() for p in model.parameters() if p.requires_grad]
    gradients = [torch.randn(p.shape, generator=generator) * 1e-3 for p in trainable]
    setups = {}
    for name, options in IMPLEMENTATIONS.items():
        copies = [p.clone().requires_grad_() for p in trainable]
        for copy, gradient in zip(copies, gradients):
            copy.grad = gradient.clone()
        setups[name] = (copies, torch.optim.Adam(copies, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                                 **options))
    return setups


def step_milliseconds(setups: Dict[str, Setup], steps: int, warm_up: int = 3) -> Dict[str, float]:
    """Median milliseconds of one ``step()`` per implementation, the implementations taking turns."""
    times: Dict[str, List[float]] = {name: [] for name in setups}
    for _ in range(warm_up + steps):
        for name, (_, optimizer) in setups.items():
            started = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - started)
    return {name: 1e3 * statistics.median(spans[warm_up:]) for name, spans in times.items()}


def distance_from(setups: Dict[str, Setup], reference: str = "for_loop") -> Dict[str, float]:
    """Largest absolute difference of each implementation's parameters from ``reference``'s."""
    ours = setups[reference][0]
    with torch.no_grad():
        return {name: max(float((a - b).abs().max()) for a, b in zip(params, ours))
                for name, (params, _) in setups.items() if name != reference}


def training_step_milliseconds(data_dir: str, batches: int, cfg: TrainConfig) -> float:
    """Milliseconds per batch of the Trainer's float32 step on a ``max_vocab_size`` model (after warm-up)."""
    _, _, loader = training_pool(data_dir, batches, cfg)
    pool = list(loader)
    step = pipeline_step(cfg.max_vocab_size, cfg, loader, "float32")
    for batch in pool[:2]:
        step(batch)
    started = time.perf_counter()
    for batch in pool:
        step(batch)
    return 1e3 * (time.perf_counter() - started) / len(pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--batches", type=int, default=8, help="batches of the training step's timing")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per implementation")
    args = parser.parse_args()
    cfg = TrainConfig()
    torch.manual_seed(0)
    model = LSTMClassifier.from_config(LSTMConfig.from_settings(cfg, cfg.max_vocab_size))
    setups = adam_setups(model, cfg)
    adam = step_milliseconds(setups, args.steps)
    training = training_step_milliseconds(args.data_dir, args.batches, cfg)
    print(json.dumps({
        "adam_step_ms": {name: round(ms, 2) for name, ms in adam.items()},
        "training_step_ms": round(training, 1),
        "adam_share_of_training_step": {name: round(ms / training, 4) for name, ms in adam.items()},
        "max_abs_difference_from_for_loop": distance_from(setups),
        "trainable_parameters": sum(p.numel() for p in setups["for_loop"][0]),
        "batches": args.batches, "optimizer_steps": args.steps, **cpu_facts()}))


if __name__ == "__main__":
    main()

"""Page faults in the training step: glibc malloc's defaults against a heap that keeps freed memory.

glibc's malloc serves every block above 32 MB with its own ``mmap`` and hands it back to the kernel
when it is freed; the kernel zeroes each page again when the next block touches it. A training step
of the LSTM frees and reallocates blocks of that size many times (the gate buffers of a batch of long
reviews, the adversarial pass's copies). The ``reuse`` way turns malloc's ``mmap`` off
(``mallopt(M_MMAP_MAX, 0)``, and 64 MB of free memory kept at the heap's top) so that freed blocks
are reused; the price is the heap's fragmentation, which raises the peak memory. The ``hugepages`` way
keeps malloc's defaults but sets PyTorch's ``THP_MEM_ALLOC_ENABLE=1`` (as importing ``src`` now does), so
that its buffers of 2 MB or more ask for transparent huge pages (``madvise``): the kernel then faults in
and zeroes a freed block's memory 2 MB at a time instead of 4 KB, with no memory kept back. The other
two ways run with it set to 0.

Each round runs both ways in two fresh processes, in alternating order, on the same pool of real IMDB
training reviews (bucketed as in training) with a fresh model of a configuration (the recommended one
by default, adversarial training included), after two warm-up steps. Each process reports real
(non-pad) tokens/s, its CPU time in user and kernel mode, its minor page faults and its peak resident
memory; separate processes are what make the peak memory comparable and each allocator start fresh.
The JSON line gives the medians, the ranges and the ratio, and names the CPU.

    .venv/bin/python bench/memory_reuse.py --data-dir data/imdb [--config configs/recommended.yaml --batches 16 --rounds 3]
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import TrainConfig  # noqa: E402
from src.training.train_model import read_config_file  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from bench.throughput import pipeline_step, tokens_per_second, training_pool  # noqa: E402

WAYS = ("system", "reuse", "hugepages")
HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"  # read by PyTorch once, at its first allocation
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (<malloc.h>)


def keep_freed_memory() -> bool:
    """Serve every block from malloc's heap and keep 64 MB of free memory at its top (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 64 << 20))


def one_way(data_dir: str, config: str, batches: int, way: str) -> Dict[str, float]:
    """In this process: the step's tokens/s, CPU seconds, faults and peak memory, with ``way``'s malloc."""
    if way == "reuse" and not keep_freed_memory():
        raise SystemExit("memory reuse needs glibc on Linux")
    cfg = TrainConfig.from_settings(read_config_file(config))
    torch.manual_seed(0)
    _, vocab_size, loader = training_pool(data_dir, batches, cfg)
    pool = list(loader)
    step = pipeline_step(vocab_size, cfg, loader, "float32", cfg.adversarial_eps)
    tokens_per_second(step, pool[:2])  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    rate = tokens_per_second(step, pool)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"tokens_per_s": rate, "tokens": sum(int(batch[1].sum()) for batch in pool),
            "user_s": after.ru_utime - before.ru_utime, "system_s": after.ru_stime - before.ru_stime,
            "minor_faults": after.ru_minflt - before.ru_minflt, "peak_rss_mb": after.ru_maxrss / 1024,
            "anon_huge_pages_mb": anon_huge_pages_mb()}


def anon_huge_pages_mb() -> float:
    """The process's memory in transparent huge pages now (Linux; 0 elsewhere)."""
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0
    return sum(int(line.split()[1]) for line in lines if line.startswith("AnonHugePages:")) / 1024


def run_way(args: argparse.Namespace, way: str) -> Dict[str, float]:
    """``one_way`` in a fresh Python process."""
    command = [sys.executable, __file__, "--data-dir", args.data_dir, "--config", args.config,
               "--batches", str(args.batches), "--way", way]
    env = {**os.environ, HUGE_PAGES: "1" if way == "hugepages" else "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {way} process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(results: List[Dict[str, float]]) -> Dict[str, object]:
    rates = [result["tokens_per_s"] for result in results]
    kernel = [result["system_s"] / (result["system_s"] + result["user_s"]) for result in results]
    return {"tokens_per_s": {"median": round(statistics.median(rates)), "min": round(min(rates)),
                             "max": round(max(rates))},
            "kernel_share_of_cpu_time": round(statistics.median(kernel), 3),
            "minor_faults_per_token": round(statistics.median(
                result["minor_faults"] / result["tokens"] for result in results), 1),
            "peak_rss_mb": round(max(result["peak_rss_mb"] for result in results)),
            "anon_huge_pages_mb": round(max(result.get("anon_huge_pages_mb", 0.0) for result in results))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "recommended.yaml"),
                        help="settings file whose model, batch size, truncation and adversarial training are timed")
    parser.add_argument("--batches", type=int, default=16, help="batches in the pool, trained once per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # a child process's one measurement
    args = parser.parse_args()
    if args.way:
        print(json.dumps(one_way(args.data_dir, args.config, args.batches, args.way)))
        return
    results = {way: [] for way in WAYS}
    for round_index in range(args.rounds):
        for way in (WAYS if round_index % 2 == 0 else WAYS[::-1]):
            results[way].append(run_way(args, way))
    per_way = {way: summary(rounds) for way, rounds in results.items()}
    print(json.dumps({
        **per_way,
        "speedup": {way: round(per_way[way]["tokens_per_s"]["median"] / per_way["system"]["tokens_per_s"]["median"], 2)
                    for way in WAYS[1:]},
        "config": Path(args.config).name, "batches": args.batches, "rounds": args.rounds, **cpu_facts()}))


if __name__ == "__main__":
    main()

"""Train several configurations on the full IMDB split and compare them; the lever study behind the defaults.

Each variant is a set of ``TrainConfig`` overrides (a JSON file maps names to them).
Variants run side by side in separate processes (``--parallel``; on a GPU several
small LSTM runs share the card well). For every variant the script prints one JSON
line (validation and test accuracy, epochs, seconds) and saves the validation and
test probabilities of its best model into one ``probabilities.npz``, so ensembles
of the variants can be scored afterwards without training again.

    .venv/bin/python bench/sweep.py bench/sweeps/levers.json --data-dir data/imdb --device cuda --parallel 4
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import load_imdb_splits, stratified_split  # noqa: E402


def train_variant(job: Tuple[str, Dict[str, Any], Dict[str, Any]]) -> Dict[str, Any]:
    """Train one variant and return its summary and probabilities (runs in a worker process)."""
    import torch

    from src.inference import SentimentPredictor
    from src.training.pipeline import TrainConfig, run_training

    name, overrides, common = job
    torch.set_num_threads(common.pop("threads"))
    work = Path(common.pop("work_dir")) / name
    cfg = TrainConfig(**{**common, **overrides, "output_dir": str(work / "model"),
                         "checkpoint_dir": str(work / "run"), "quiet": True, "tensorboard": False})
    started = time.perf_counter()
    metrics = run_training(cfg)
    seconds = time.perf_counter() - started
    splits = load_imdb_splits(cfg.data_dir)
    _, val_idx = stratified_split(splits["train"].labels, cfg.validation_split, cfg.seed)
    predictor = SentimentPredictor.from_pretrained(work / "model", device=cfg.device)
    history = metrics["history"]
    return {
        "name": name, "overrides": overrides, "test_accuracy": round(metrics["test"]["accuracy"], 4),
        "best_val_accuracy": round(max(history["val_accuracies"]), 4), "best_epoch": history["best_epoch"],
        "epochs": history["epochs_completed"], "seconds": round(seconds, 1),
        "val": predictor.probabilities(splits["train"].select(val_idx).texts).astype(np.float32),
        "test": predictor.probabilities(splits["test"].texts).astype(np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON file: {name: {TrainConfig field: value}}")
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--glove-cache-dir", default="data/glove", help="holds glove.6B.50d.txt or glove.6B.zip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--only", nargs="*", help="train only these variants")
    parser.add_argument("--out", default="sweep-results", help="folder for results.jsonl and probabilities.npz")
    parser.add_argument("--work-dir", help="where the variants' runs and models go (default: OUT/runs)")
    args = parser.parse_args()

    variants = json.loads(Path(args.variants).read_text(encoding="utf-8"))
    names = args.only or list(variants)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = {"data_dir": args.data_dir, "device": args.device, "glove_cache_dir": args.glove_cache_dir,
              "work_dir": args.work_dir or str(out / "runs"), "threads": max(1, (os.cpu_count() or 1) // args.parallel)}
    arrays: Dict[str, np.ndarray] = {}
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.parallel, maxtasksperchild=1) as pool:
        jobs = [(name, variants[name], dict(common)) for name in names]
        for result in pool.imap_unordered(train_variant, jobs):
            arrays[f"{result['name']}/val"], arrays[f"{result['name']}/test"] = result.pop("val"), result.pop("test")
            np.savez(out / "probabilities.npz", **arrays)
            with open(out / "results.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

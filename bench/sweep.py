"""Train several configurations on the full IMDB split and compare them; the lever study behind the defaults.

Each variant is a set of ``TrainConfig`` overrides (a JSON file maps names to them).
Variants run side by side in separate processes (``--parallel``; on a GPU several
small LSTM runs share the card well). For every variant the script prints one JSON
line (validation and test accuracy, epochs, seconds) and saves the validation and
test probabilities of its best model into one ``probabilities.npz``; at the end it
scores ensembles (the average probability of every pair of variants, and of all),
and ``--score-only`` scores a saved ``probabilities.npz`` again without training.

    .venv/bin/python bench/sweep.py bench/sweeps/levers.json --data-dir data/imdb --device cuda --parallel 4
"""

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import load_imdb_splits, stratified_split  # noqa: E402

SHORT_REVIEW_WORDS = 30  # the robustness proxy of the accuracy issue: reviews cut to their first 30 words


def train_variant(job: Tuple[str, Dict[str, Any], Dict[str, Any]]) -> Dict[str, Any]:
    """Train one variant and return its summary and probabilities (runs in a worker process); a variant
    that fails returns its error, so the others go on."""
    try:
        return _train_variant(job)
    except Exception as err:  # noqa: BLE001 - one variant's failure must not end the side-by-side runs
        return {"name": job[0], "overrides": job[1], "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}


def _train_variant(job: Tuple[str, Dict[str, Any], Dict[str, Any]]) -> Dict[str, Any]:
    import torch

    from src.inference import SentimentPredictor
    from src.config import TrainConfig
    from src.training.pipeline import run_training

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
    blend = metrics.get("ngram_blend", {})
    return {
        "name": name, "overrides": overrides, "test_accuracy": round(metrics["test"]["accuracy"], 4),
        "lstm_test_accuracy": round(metrics.get("test_lstm_only", metrics["test"])["accuracy"], 4),
        "ngram_test_accuracy": blend.get("ngram_only_test_accuracy"),
        "short_reviews": short_review_accuracy(predictor, splits["test"].texts, splits["test"].labels),
        "best_val_accuracy": round(max(history["val_accuracies"]), 4), "best_epoch": history["best_epoch"],
        "epochs": history["epochs_completed"], "time_limit_reached": history["time_limit_reached"],
        "seconds": round(seconds, 1),
        "val": predictor.probabilities(splits["train"].select(val_idx).texts).astype(np.float32),
        "test": predictor.probabilities(splits["test"].texts).astype(np.float32),
    }


def short_review_accuracy(predictor, texts, labels, words: int = SHORT_REVIEW_WORDS) -> Dict[str, float]:
    """Test accuracy on the reviews cut to their first ``words`` words: a proxy for short text from
    elsewhere (the model and, for a blended model, the LSTM alone)."""
    short = [" ".join(text.split()[:words]) for text in texts]
    truth = np.asarray(labels) == 1
    result = {"model": float(np.mean((predictor.probabilities(short) >= 0.5) == truth))}
    if predictor.ngram_blend is not None:
        result["lstm_alone"] = float(np.mean((predictor.lstm_log_odds(short) >= 0) == truth))
    return {key: round(value, 4) for key, value in result.items()}


def score_ensembles(probabilities: Dict[str, np.ndarray], test_labels: np.ndarray) -> None:
    """Print the test accuracy of averaging the probabilities of each pair of variants and of all of them."""
    names = sorted(key[: -len("/test")] for key in probabilities if key.endswith("/test"))
    groups = [list(pair) for pair in itertools.combinations(names, 2)] + ([names] if len(names) > 2 else [])
    for group in groups:
        average = np.mean([probabilities[f"{name}/test"] for name in group], axis=0)
        accuracy = float(np.mean((average >= 0.5) == test_labels))
        print(json.dumps({"ensemble": group, "test_accuracy": round(accuracy, 4)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="JSON file: {name: {TrainConfig field: value}}")
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--glove-cache-dir", default="data/glove", help="holds glove.6B.50d.txt or glove.6B.zip")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--only", nargs="*", help="train only these variants")
    parser.add_argument("--out", default="sweep-results", help="folder for results.jsonl and probabilities.npz")
    parser.add_argument("--score-only", action="store_true", help="score OUT/probabilities.npz, train nothing")
    parser.add_argument("--work-dir", help="where the variants' runs and models go (default: OUT/runs)")
    parser.add_argument("--max-minutes", type=float, help="time limit of each variant's run (--max-minutes; "
                        "a variant's own max_minutes wins)")
    args = parser.parse_args()

    out = Path(args.out)
    test_labels = np.array(load_imdb_splits(args.data_dir, ["test"])["test"].labels)
    if args.score_only:
        score_ensembles(dict(np.load(out / "probabilities.npz")), test_labels)
        return
    variants = json.loads(Path(args.variants).read_text(encoding="utf-8"))
    names = args.only or list(variants)
    out.mkdir(parents=True, exist_ok=True)
    common = {"data_dir": args.data_dir, "device": args.device, "glove_cache_dir": args.glove_cache_dir,
              "work_dir": args.work_dir or str(out / "runs"), "threads": max(1, (os.cpu_count() or 1) // args.parallel),
              "max_minutes": args.max_minutes}
    arrays: Dict[str, np.ndarray] = {}
    failed: List[str] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.parallel, maxtasksperchild=1) as pool:
        jobs = [(name, variants[name], dict(common)) for name in names]
        for result in pool.imap_unordered(train_variant, jobs):
            if "error" in result:
                failed.append(result["name"])
            else:
                arrays[f"{result['name']}/val"], arrays[f"{result['name']}/test"] = result.pop("val"), result.pop("test")
                np.savez(out / "probabilities.npz", **arrays)
            with open(out / "results.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
    score_ensembles(arrays, test_labels)
    if failed:
        sys.exit(f"{len(failed)} variant(s) failed: {', '.join(failed)} (their errors are in {out / 'results.jsonl'})")


if __name__ == "__main__":
    main()

"""Per-word explanations: do they mean something, and what do they cost?

For each model directory and each method (integrated gradients, occlusion), on
``--reviews`` IMDB test reviews drawn with a fixed seed: each review's predicted
label's probability before and after deleting the 5 words with the largest
contributions toward that label, against deleting 5 random words (5 draws
averaged). Deleting a word removes its token from the review's token sequence;
the text given to the model is the remaining tokens joined by spaces (read back as
exactly those tokens), and "before" is all the tokens joined the same way
(``src.inference.explain.deletion_drops``). Prints one JSON line per model and
method as it goes, then one JSON object with all of them: the ratio of the mean
drops (top 5 / random 5), the drops, how often the top-5 drop beat the random one,
milliseconds per review of the explanation alone, and, for integrated gradients,
how far the contributions' sum is from the log-odds less the baseline's
(completeness); with both methods, the paired difference of their top-5 drops
(occlusion less integrated gradients) with a 95% bootstrap interval.
``--shared-cpu`` marks the times as taken on a CPU other work was using.

    OMP_NUM_THREADS=1 .venv/bin/python bench/explain.py --model-dir A [--model-dir B] [--reviews 300] \\
        [--output results.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_facts  # noqa: E402
from src.data import load_imdb  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.inference.explain import DEFAULT_STEPS, METHODS, deletion_drops  # noqa: E402
from src.inference.predictor import DEFAULT_BATCH_SIZE  # noqa: E402
from src.utils.io import atomic_write_json  # noqa: E402


def completeness(explained: List[Dict]) -> Dict[str, float]:
    """How far the contributions' sum is from log_odds - baseline: the mean absolute gap, and that mean over
    the mean absolute log_odds - baseline."""
    gaps, spans = [], []
    for result in explained:
        explanation = result["explanation"]
        span = explanation["log_odds"] - explanation["baseline"]
        gaps.append(abs(sum(word["contribution"] for word in explanation["words"]) - span))
        spans.append(abs(span))
    return {"mean_abs_gap": round(float(np.mean(gaps)), 5),
            "relative_gap": round(float(np.mean(gaps) / np.mean(spans)), 5)}


def measure(predictor: SentimentPredictor, texts: List[str], method: str, steps: int, seed: int
            ) -> Tuple[Dict[str, object], np.ndarray]:
    """The deletion test and the cost of one method on one model; and each review's top-5 drop."""
    started = time.perf_counter()
    explained = predictor.explain_batch(texts, DEFAULT_BATCH_SIZE, method=method, steps=steps)
    seconds = time.perf_counter() - started
    drops = deletion_drops(predictor, explained, DEFAULT_BATCH_SIZE, seed=seed)
    top, random = drops["top"], drops["random"]
    result: Dict[str, object] = {
        "ratio": round(float(top.mean() / random.mean()), 2), "top5_drop": round(float(top.mean()), 4),
        "random5_drop": round(float(random.mean()), 4), "top_beats_random": round(float(np.mean(top > random)), 3),
        "ms_per_review": round(1000 * seconds / len(texts), 1)}
    if method == "integrated_gradients":
        result.update(steps=steps, completeness=completeness(explained))
    return result, top


def paired_difference(first: np.ndarray, second: np.ndarray, seed: int) -> Dict[str, float]:
    """The mean of ``second - first`` over the same reviews, with a 95% bootstrap interval (2,000 resamples)."""
    difference = second - first
    rng = np.random.default_rng(seed)
    means = [difference[rng.integers(0, len(difference), len(difference))].mean() for _ in range(2000)]
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(difference.mean()), 5), "interval_95": [round(float(low), 5), round(float(high), 5)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", action="append", required=True, help="a trained model directory; repeatable")
    parser.add_argument("--reviews", type=int, default=300, help="test reviews, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="integrated gradients' quadrature points")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--shared-cpu", action="store_true", help="mark the times as taken on a shared CPU")
    parser.add_argument("--output", help="also write the JSON object here")
    args = parser.parse_args()

    test = load_imdb(args.data_dir, "test")
    picked = np.random.default_rng(args.seed).choice(len(test.texts), args.reviews, replace=False)
    texts = [test.texts[i] for i in picked]
    models = {}
    for model_dir in args.model_dir:
        predictor = SentimentPredictor.from_pretrained(model_dir, device="cpu", runtime="torch")
        tokens = [len(predictor.preprocessor.tokenize(text)) for text in texts]
        models[model_dir] = {"blended": predictor.ngram_blend is not None, "temperature": predictor.temperature,
                             "max_length": predictor.max_length, "mean_tokens": round(float(np.mean(tokens)), 1)}
        tops = {}
        for method in args.methods:
            models[model_dir][method], tops[method] = measure(predictor, texts, method, args.steps, args.seed)
            print(json.dumps({"model_dir": model_dir, "method": method, **models[model_dir][method]}), flush=True)
        if len(tops) == 2:  # is one method's top-5 drop larger than the other's beyond chance?
            models[model_dir]["occlusion_minus_ig_top5_drop"] = paired_difference(
                tops["integrated_gradients"], tops["occlusion"], args.seed)
    result = {"models": models, "reviews": args.reviews, "seed": args.seed, "deleted_words": 5, "random_draws": 5,
              "shared_cpu": args.shared_cpu, **cpu_facts()}
    if args.output:
        atomic_write_json(args.output, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

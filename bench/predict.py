"""Prediction speed: loading a model directory, batch throughput, single-review latency.

Measures two model sizes side by side in one process, the default (embedding 300,
hidden 128, 2 layers) and the "fast" preset of ``bench/accuracy.py`` (embedding 50,
hidden 64, 1 layer), both bidirectional, with a vocabulary built on the IMDB
training reviews. The weights are untrained, which does not change the speed;
``--model-dir`` measures a trained model directory instead, and for a model with
an n-gram blend also the same directory without it (the LSTM alone). Each
directory is measured with PyTorch and with ONNX Runtime in float32, with ONNX
Runtime in int8 (``model.onnx`` and ``model.int8.onnx`` are exported first if
absent), as ``auto`` runs it (small batches in int8, larger ones in PyTorch in
bfloat16 where the CPU has bfloat16 instructions, else in ONNX Runtime in float32),
where the CPU has bfloat16 also with PyTorch in bfloat16, and with PyTorch's own
dynamic int8 quantization of the LSTM and linear layers (``torch_int8``:
``torch.ao.quantization.quantize_dynamic``, deprecated in recent torch releases
and left out where it is gone; torchao's successor quantizes linear layers, not
LSTMs; measured, not offered by the predictor). The variants
are loaded once each and timed in ``--rounds`` rounds, in turn and in reversed order
every other round; medians and spreads are reported. ``--reading-lengths`` also
times the directory's LSTM saved again to read at most N tokens of each review
(its ``eval_max_length``), so the cost of reading more is measured on the same
weights. Last line: one JSON object.

    .venv/bin/python bench/predict.py --data-dir data/imdb [--model-dir models] [--parity] [--batch-sizes 1 4 8 16 64]
        [--rounds 3] [--reading-lengths 400 800]
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import TextPreprocessor, load_imdb_splits  # noqa: E402
from src.config import check_setting  # noqa: E402
from src.data.preprocessing import tokenize  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.inference.onnx_model import export_onnx  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from src.utils.device import cpu_has_native_bfloat16  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.models.model_dir import ONNX_FILE, ONNX_INT8_FILE, load_model_directory, save_model_directory  # noqa: E402
from src.models.ngram_model import NGRAM_FILE, NgramBlend, _vectorizer  # noqa: E402

SIZES = {"default": {"embedding_dim": 300, "hidden_dim": 128, "n_layers": 2},
         "fast": {"embedding_dim": 50, "hidden_dim": 64, "n_layers": 1}}


TORCH_INT8 = "torch_int8"  # PyTorch's dynamic int8 quantization: a variant of the bench only


def variants() -> Dict[str, Tuple[str, str]]:
    """The ways to run the LSTM that this CPU offers, by name: (runtime, precision). "auto" runs batches of
    fewer than ``ONNX_BELOW`` reviews in int8, larger ones in PyTorch in bfloat16 where the CPU has bfloat16
    instructions, else in ONNX Runtime in float32. ``TORCH_INT8`` is PyTorch in float32 with the LSTM and
    linear layers then quantized (``load_variant``)."""
    ways = {"torch": ("torch", "float32"), "onnxruntime": ("onnxruntime", "float32"),
            "onnxruntime_int8": ("onnxruntime", "int8"), "auto": ("auto", "auto")}
    if hasattr(getattr(torch.ao, "quantization", None), "quantize_dynamic"):  # torch plans to remove it
        ways[TORCH_INT8] = ("torch", "float32")
    if cpu_has_native_bfloat16():
        ways["torch_bfloat16"] = ("torch", "bfloat16")
    return ways


def load_variant(model_dir: str, name: str) -> SentimentPredictor:
    """The predictor of ``model_dir`` that runs its LSTM the way ``variants()[name]`` says."""
    runtime, precision = variants()[name]
    predictor = SentimentPredictor.from_pretrained(model_dir, device="cpu", runtime=runtime, precision=precision)
    if name == TORCH_INT8:
        with warnings.catch_warnings():  # deprecated in favour of torchao, which this project does not depend on
            warnings.simplefilter("ignore")
            predictor.model = torch.ao.quantization.quantize_dynamic(predictor.model, {nn.LSTM, nn.Linear},
                                                                     dtype=torch.qint8)
    return predictor


def by_batch_size(model_dir: str, texts: List[str], sizes: List[int]) -> Dict[str, Dict[str, int]]:
    """Reviews/s of each variant's LSTM when ``texts`` come in calls of a given size (as a service gets
    them), by size: where ONNX Runtime stops leading PyTorch in bfloat16 (``ONNX_BELOW``)."""
    predictors = {name: load_variant(model_dir, name) for name in variants()}
    result = {}
    for size in sizes:
        result[str(size)] = {}
        for name, predictor in predictors.items():
            predictor.lstm_scores(texts[:size], size)  # warm-up
            started = time.perf_counter()
            for start in range(0, len(texts), size):
                predictor.lstm_scores(texts[start: start + size], size)
            result[str(size)][name] = round(len(texts) / (time.perf_counter() - started))
    return result


def measure_predictor(predictor: SentimentPredictor, texts: List[str], singles: List[str],
                      batch_size: int) -> Dict[str, float]:
    """Batch reviews/s and single-review latency percentiles of a loaded predictor."""
    predictor.predict_batch(texts[:64])  # warm-up
    started = time.perf_counter()
    predictor.predict_batch(texts, batch_size=batch_size)
    batch_s = time.perf_counter() - started
    latencies = []
    for text in singles:
        started = time.perf_counter()
        predictor.predict(text)
        latencies.append(time.perf_counter() - started)
    return {"batch_reviews_per_s": round(len(texts) / batch_s),
            "single_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
            "single_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2)}


def measure_runtimes(model_dir: str, texts: List[str], singles: List[str], batch_size: int,
                     rounds: int = 1) -> Dict[str, object]:
    """Each of ``variants()`` on the same directory, loaded once (``load_s``) and timed in ``rounds`` rounds, the
    variants in turn and in reversed order every other round: the medians, the [min, max] of each
    (``spread``), and each one's speed-up over PyTorch in float32."""
    if not all((Path(model_dir) / name).is_file() for name in (ONNX_FILE, ONNX_INT8_FILE)):
        export_onnx(model_dir)
    predictors, load_s = {}, {}
    for name in variants():
        started = time.perf_counter()
        predictors[name] = load_variant(model_dir, name)
        load_s[name] = round(time.perf_counter() - started, 3)
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in predictors}
    for round_index in range(rounds):
        for name in (list(predictors) if round_index % 2 == 0 else list(predictors)[::-1]):
            runs[name].append(measure_predictor(predictors[name], texts, singles, batch_size))
    result: Dict[str, object] = {}
    for name, measured in runs.items():
        keys = list(measured[0])
        result[name] = {"load_s": load_s[name], **{key: float(np.median([run[key] for run in measured]))
                                                   for key in keys},
                        "spread": {key: [min(run[key] for run in measured), max(run[key] for run in measured)]
                                   for key in keys}}
    result["vs_torch"] = {name: speedup(result[name], result["torch"]) for name in predictors if name != "torch"}
    return result


def speedup(side: Dict[str, float], reference: Dict[str, float]) -> Dict[str, float]:
    """How many times ``reference``'s batch rate ``side`` runs at, and how many times sooner it answers one review
    (p50)."""
    return {"batch": round(side["batch_reviews_per_s"] / reference["batch_reviews_per_s"], 2),
            "single_p50": round(reference["single_p50_ms"] / side["single_p50_ms"], 2)}


def ngram_against_sparse_reference(model_dir: str, texts: List[str]) -> Dict[str, float]:
    """The n-gram part of a blended model against the sparse matrix product it replaced (scikit-learn's
    CountVectorizer over the same n-grams): set-up time, reviews/s (also given the reviews' tokens, which the
    predictor shares with the LSTM), and the largest difference."""
    blend = NgramBlend.load(model_dir)
    started = time.perf_counter()
    vectorizer = _vectorizer(blend.model.max_n, blend.model.tokenizer, vocabulary=blend.model.ngrams)
    reference_setup = time.perf_counter() - started
    started = time.perf_counter()
    reference = vectorizer.transform(texts) @ blend.model.weights.astype(np.float64) + blend.model.bias
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = blend.model.log_odds(texts)
    ours_s = time.perf_counter() - started
    tokenized = [tokenize(text, tokenizer=blend.model.tokenizer) for text in texts]  # as the predictor shares them
    started = time.perf_counter()
    shared = blend.model.log_odds(texts, tokenized)
    shared_s = time.perf_counter() - started
    return {"reference_setup_s": round(reference_setup, 2), "reference_reviews_per_s": round(len(texts) / reference_s),
            "packed_reviews_per_s": round(len(texts) / ours_s), "speedup": round(reference_s / ours_s, 2),
            "packed_given_tokens_reviews_per_s": round(len(texts) / shared_s),
            "max_abs_difference": float(max(np.abs(ours - reference).max(), np.abs(shared - reference).max()))}


def parity(model_dir: str, texts: List[str], labels: List[int], batch_size: int) -> Dict[str, float]:
    """Each variant's accuracy on the same reviews, and the share of them on which it gives the label that
    PyTorch in float32 gives."""
    predictors = {name: load_variant(model_dir, name) for name in variants()}
    predicted = {name: predictor.probabilities(texts, batch_size) >= 0.5
                 for name, predictor in predictors.items()}
    truth = np.asarray(labels) == 1
    return {**{f"{name}_same_label": float(np.mean(values == predicted["torch"]))
               for name, values in predicted.items() if name != "torch"},
            **{f"{name}_accuracy": float(np.mean(values == truth)) for name, values in predicted.items()}}


def reading_copies(model_dir: str, lengths: List[int]) -> Dict[int, str]:
    """The LSTM of ``model_dir`` saved again once per reading length (its vocabulary's ``eval_max_length``), so
    that the cost of reading more of each review is timed on the same weights."""
    copies = {}
    for length in lengths:
        model, preprocessor = load_model_directory(model_dir)
        preprocessor.eval_max_length = check_setting("eval_max_length", length, "--reading-lengths")
        copies[length] = tempfile.mkdtemp(prefix=f"predict-bench-read-{length}-")
        save_model_directory(copies[length], model, preprocessor)
    return copies


def by_reading_length(model_dir: str, lengths: List[int], texts: List[str], singles: List[str],
                      batch_size: int, rounds: int = 3) -> Dict[str, object]:
    """Each runtime's speed reading ``lengths`` tokens of a review (the LSTM alone): the medians over ``rounds``
    (the lengths in turn, in reversed order every other round), the mean tokens read, and each length's batch
    rate and single-review p50 against the first length's."""
    copies = reading_copies(model_dir, lengths)
    runs: Dict[int, List[Dict[str, object]]] = {length: [] for length in lengths}
    for round_index in range(rounds):
        for length in (lengths if round_index % 2 == 0 else lengths[::-1]):
            runs[length].append(measure_runtimes(copies[length], texts, singles, batch_size))
    result: Dict[str, object] = {}
    for length, measured in runs.items():
        tokens = np.mean([len(ids) for ids in SentimentPredictor.from_pretrained(copies[length]).encode(texts)])
        result[str(length)] = {"mean_tokens_read": round(float(tokens), 1), **{
            name: {key: float(np.median([run[name][key] for run in measured]))
                   for key in ("batch_reviews_per_s", "single_p50_ms")} for name in variants()}}
    first = result[str(lengths[0])]
    result["vs_first_length"] = {str(length): {name: speedup(result[str(length)][name], first[name])
                                               for name in variants()} for length in lengths[1:]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--model-dir", help="a trained model directory (default: untrained models of both sizes)")
    parser.add_argument("--reviews", type=int, default=5000, help="test reviews for the batch measurement")
    parser.add_argument("--single", type=int, default=200, help="reviews classified one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[],
                        help="also time calls of these many reviews each (1000 reviews), e.g. 1 4 8 16 64")
    parser.add_argument("--parity", action="store_true",
                        help="with --model-dir: also compare the variants' labels on the whole test split, "
                             "blended and LSTM alone")
    parser.add_argument("--reading-lengths", type=int, nargs="*", default=[],
                        help="with --model-dir: also time its LSTM reading at most these many tokens of a review "
                             "(its --eval-max-length), e.g. 400 800")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of each measurement (medians and spreads reported)")
    args = parser.parse_args()

    splits = load_imdb_splits(args.data_dir)
    texts, singles = splits["test"].texts[: args.reviews], splits["test"].texts[-args.single:]
    model_dirs = {"model_dir": args.model_dir} if args.model_dir else {}
    if args.model_dir and (Path(args.model_dir) / NGRAM_FILE).is_file():  # the same model without its blend
        model_dirs["lstm_only"] = tempfile.mkdtemp(prefix="predict-bench-lstm-only-")
        save_model_directory(model_dirs["lstm_only"], *load_model_directory(args.model_dir))
    if not model_dirs:
        processor = TextPreprocessor().build_vocab(splits["train"].texts)
        for name, size in SIZES.items():
            model_dirs[name] = tempfile.mkdtemp(prefix=f"predict-bench-{name}-")
            save_model_directory(model_dirs[name], LSTMClassifier(processor.vocab_size, **size), processor)
    result = {name: measure_runtimes(path, texts, singles, args.batch_size, args.rounds)
              for name, path in model_dirs.items()}
    if "lstm_only" in model_dirs:
        result["ngram_part"] = ngram_against_sparse_reference(args.model_dir, texts)
    if args.batch_sizes:
        result["lstm_reviews_per_s_by_call_size"] = {name: by_batch_size(path, texts[:1000], args.batch_sizes)
                                                     for name, path in model_dirs.items()
                                                     if name != "model_dir" or "lstm_only" not in model_dirs}
    if args.model_dir and args.reading_lengths:
        result["by_reading_length"] = by_reading_length(args.model_dir, args.reading_lengths, texts, singles,
                                                        args.batch_size, args.rounds)
    if args.model_dir and args.parity:
        result["parity"] = {name: parity(path, splits["test"].texts, splits["test"].labels, args.batch_size)
                            for name, path in model_dirs.items()}
    result.update(batch_size=args.batch_size, **cpu_facts())
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Classifying reviews with a trained model directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from src.config import PRECISIONS
from src.data.datasets import collate_batch
from src.data.preprocessing import TextPreprocessor
from src.exceptions import CheckpointError, ExplanationRefused
from src.inference.explain import DEFAULT_METHOD, DEFAULT_STEPS, explain_batch
from src.inference.metrics import logistic, predicted_classes
from src.inference.onnx_model import OnnxLSTM
from src.models.lstm_model import LSTMClassifier, check_vocabulary_fits
from src.models.model_dir import load_model_directory, load_temperature
from src.models.ngram_model import NgramBlend
from src.utils.device import cpu_computes_in_bfloat16, resolve_device

# Measured with bench/predict.py on a 2-core CPU: batches of 64 ran 9% faster than 256
# for the default model; on a GPU larger batches are faster.
DEFAULT_BATCH_SIZE = 64
# "auto": ONNX Runtime on a CPU when the model directory holds a current model.onnx (measured faster there
# with bench/predict.py), else PyTorch; where the LSTM runs in bfloat16, ONNX Runtime takes only batches of
# fewer than ONNX_BELOW reviews (single reviews), PyTorch the larger ones
RUNTIMES = ("auto", "torch", "onnxruntime")
# training's PRECISIONS and int8: ONNX Runtime's model.int8.onnx for every batch
PREDICTION_PRECISIONS = PRECISIONS + ("int8",)
# bench/predict.py --batch-sizes on a 2-core Xeon with AMX: ONNX Runtime (float32) led in calls of up to 4
# reviews and about tied at 8, PyTorch in bfloat16 led from 16. "auto" keeps float32 below it: the int8 graph
# answered sooner but changed the label of 0.15-0.22% of the test reviews of one model (bench/README.md)
ONNX_BELOW = 8


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` and ``--precision``, shared by predict, evaluate and serve."""
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="auto: ONNX Runtime on a CPU when the model directory holds model.onnx "
                             "(python -m src.inference.export), else PyTorch; where the LSTM runs in bfloat16, "
                             f"ONNX Runtime takes only batches of fewer than {ONNX_BELOW} reviews (default: auto)")
    parser.add_argument("--precision", default="auto", choices=PREDICTION_PRECISIONS,
                        help="the LSTM's arithmetic: bfloat16 needs a CPU with AVX512-BF16 or AMX (or a GPU) and "
                             "PyTorch; int8 (faster for single reviews, but it changes a few borderline labels) "
                             "needs ONNX Runtime and model.int8.onnx; auto picks bfloat16 on such a CPU for "
                             f"batches of {ONNX_BELOW} reviews or more, float32 elsewhere (default: auto)")


def add_lstm_only_argument(parser: argparse.ArgumentParser) -> None:
    """``--lstm-only``, shared by predict and evaluate."""
    parser.add_argument("--lstm-only", action="store_true",
                        help="the LSTM alone: leave out the n-gram part of a model trained with --ngram-blend, "
                             "and the temperature fitted for the blend, to see what the neural network does by itself")


def prediction_dtype(precision: str, device: torch.device, runtime: str = "auto") -> Optional[torch.dtype]:
    """The LSTM's arithmetic in PyTorch: bfloat16 (autocast) or None (float32, or no PyTorch: int8).

    On a CPU, training's rule (``cpu_computes_in_bfloat16``) decides, unless ONNX Runtime alone is asked for,
    which runs the LSTM in float32 or int8 and so refuses bfloat16 (bench/predict.py: on a CPU with bfloat16,
    batches ran faster in it than in float32 in either runtime, with the same label on all but a few test
    reviews). int8 is ONNX Runtime's on a CPU. On a GPU, "auto" stays float32 and bfloat16 is refused where the
    card lacks it.
    """
    if precision not in PREDICTION_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PREDICTION_PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16" and runtime == "onnxruntime":
        raise ValueError("ONNX Runtime runs the LSTM in float32 or int8: use --precision float32 or int8, or "
                         "--runtime torch for bfloat16")
    if precision == "int8" and (runtime == "torch" or device.type != "cpu"):
        raise ValueError("int8 runs in ONNX Runtime on the CPU: use --runtime auto (or onnxruntime) and "
                         "--device cpu, or another --precision")
    if precision == "int8":
        return None
    if device.type == "cuda":
        if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise ValueError("--precision bfloat16 needs a GPU that computes in it; use --precision float32 or auto")
        return torch.bfloat16 if precision == "bfloat16" else None
    if runtime == "onnxruntime":
        return None
    return torch.bfloat16 if cpu_computes_in_bfloat16(precision) else None


class _Classifier:
    """Labels from ``class_probabilities``, which subclasses provide, with ``class_names``."""

    class_names: Tuple[str, ...]

    def class_probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The probability of every class for each text: [len(texts), len(class_names)], in input order."""
        raise NotImplementedError

    def probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """P(positive) for each text (models of two classes; ``class_probabilities`` serves any)."""
        if len(self.class_names) != 2:
            raise ValueError(f"this model has {len(self.class_names)} classes, not a positive and a negative one; "
                             "use class_probabilities()")
        return self.class_probabilities(texts, batch_size)[:, 1]

    def predict_batch(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> List[Dict[str, object]]:
        """For each text: ``label`` (a class name), ``probabilities`` (every class by name) and, of two
        classes, ``probability`` (the positive class's)."""
        probabilities = self.class_probabilities(texts, batch_size)
        return [_label(row, label, self.class_names)
                for row, label in zip(probabilities, predicted_classes(probabilities))]

    def predict(self, text: str) -> Dict[str, object]:
        return self.predict_batch([text])[0]


class SentimentPredictor(_Classifier):
    """``predict("text")`` -> ``{"label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9},
    "probability": 0.9}`` (the model's class names; ``probability`` only of two classes: the positive one's).

    Reviews are encoded and cut by the model's own preprocessor, exactly as its
    validation reviews were in training (to its ``eval_max_length`` tokens, by its
    ``truncation``). Batches are formed from
    reviews of similar length, and results come back in input order. A model
    trained with ``--ngram-blend`` also holds an n-gram model, whose log-odds are
    blended with the LSTM's. The final scores are divided by the model's
    ``temperature`` (fitted on the validation split by training, 1.0 for models
    without one) before they become probabilities: labels are unchanged, and the
    probabilities are calibrated.
    """

    def __init__(self, model: LSTMClassifier, preprocessor: TextPreprocessor,
                 device: Optional[Union[str, torch.device]] = None, ngram_blend: Optional[NgramBlend] = None,
                 onnx: Optional[OnnxLSTM] = None, temperature: float = 1.0, dtype: Optional[torch.dtype] = None,
                 onnx_small: Optional[OnnxLSTM] = None):
        check_vocabulary_fits(preprocessor.vocab_size, model.config.vocab_size)
        self.device = resolve_device(device)
        self.dtype = dtype  # the LSTM's arithmetic in PyTorch: bfloat16 (autocast) or None (float32)
        self.temperature = temperature
        self.model = model.to(self.device).eval()
        self.preprocessor = preprocessor
        self.ngram_blend = ngram_blend
        on_cpu = self.device.type == "cpu"
        # the same LSTM run by ONNX Runtime (None: by PyTorch at dtype): for batches of ONNX_BELOW reviews or
        # more, and for smaller ones (by default the same as the larger ones)
        self.onnx = onnx if on_cpu else None
        self.onnx_small = (onnx_small or onnx) if on_cpu else None
        self.class_names = tuple(model.config.classes)

    @property
    def runtime(self) -> str:
        """torch, onnxruntime, or onnxruntime+torch: small batches in ONNX Runtime, larger ones in PyTorch."""
        return _joined("onnxruntime" if runner else "torch" for runner in (self.onnx_small, self.onnx))

    @property
    def precision(self) -> str:
        """The LSTM's arithmetic, e.g. float32, or float32+bfloat16: small batches in float32, larger ones in
        bfloat16."""
        torch_precision = "bfloat16" if self.dtype == torch.bfloat16 else "float32"
        return _joined(runner.precision if runner else torch_precision for runner in (self.onnx_small, self.onnx))

    @property
    def max_length(self) -> int:
        """Tokens of a text the LSTM reads (the rest of a longer one is cut)."""
        return self.preprocessor.eval_max_length

    @classmethod
    def from_pretrained(cls, model_dir: Union[str, Path], device: Optional[Union[str, torch.device]] = None,
                        runtime: str = "auto", precision: str = "auto",
                        lstm_only: bool = False) -> "SentimentPredictor":
        """Load a model directory written by training (``--output-dir``); ``runtime`` is one of ``RUNTIMES``,
        ``precision`` one of ``PREDICTION_PRECISIONS`` (see ``prediction_dtype`` and ``onnx_runners``).
        ``lstm_only`` leaves out a blended model's n-gram part and, with it, the temperature that was fitted
        for the blend's scores."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        resolved = resolve_device(device)
        on_cpu = resolved.type == "cpu"
        if runtime == "onnxruntime" and not on_cpu:
            raise ValueError("the onnxruntime runtime predicts on the CPU; use --device cpu or --runtime torch")
        dtype = prediction_dtype(precision, resolved, runtime)
        model, preprocessor = load_model_directory(model_dir)
        onnx, onnx_small = onnx_runners(model_dir, runtime, precision, dtype) if on_cpu else (None, None)
        blend = NgramBlend.load(model_dir)
        temperature = load_temperature(model_dir)
        if lstm_only and blend is not None:
            blend, temperature = None, 1.0
        if blend is not None and blend.model.classes != len(model.config.classes):
            raise CheckpointError(f"{model_dir}: the n-gram model has {blend.model.classes} classes but the LSTM "
                                  f"{len(model.config.classes)}; the directory mixes files of two runs")
        return cls(model, preprocessor, device=resolved, ngram_blend=blend, onnx=onnx, temperature=temperature,
                   dtype=dtype, onnx_small=onnx_small)

    def encode(self, texts: Sequence[str]) -> List[np.ndarray]:
        """The LSTM's input ids of each text."""
        _require_text(texts)
        return self.preprocessor.encode_for_model(texts)

    def class_probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return probabilities_of(self.scores(texts, batch_size) / self.temperature)

    def scores(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The model's final scores before the temperature, in input order: the LSTM's, blended with the
        n-gram model's for a blended model (log-odds [N] of two classes, logits [N, C] of more). Each text
        is tokenised once where the two parts read the same tokens."""
        if self.ngram_blend is None:
            return self.lstm_scores(texts, batch_size)
        _require_text(texts)
        tokenized = [self.preprocessor.tokenize(text) for text in texts] if self._ngram_reads_lstm_tokens else None
        scores = self._lstm_scores_of(self.preprocessor.encode_for_model(texts, tokenized), batch_size)
        return self.ngram_blend.combine(scores, texts, tokenized)

    @property
    def _ngram_reads_lstm_tokens(self) -> bool:
        return self.preprocessor.lowercase and self.preprocessor.tokenizer == self.ngram_blend.model.tokenizer

    def lstm_log_odds(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The LSTM's log(P(positive) / P(negative)) for each text (models of two classes)."""
        scores = self.lstm_scores(texts, batch_size)
        if scores.ndim != 1:
            raise ValueError(f"this model has {len(self.class_names)} classes; use lstm_scores()")
        return scores

    def lstm_scores(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The LSTM's scores, in input order: of two classes its log-odds [N], of more its logits [N, C]."""
        return self._lstm_scores_of(self.encode(texts), batch_size)

    @torch.inference_mode()
    def _lstm_scores_of(self, encoded: List[np.ndarray], batch_size: int) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = np.argsort([-len(ids) for ids in encoded], kind="stable")
        classes = len(self.class_names)
        result = np.empty((len(encoded),) if classes == 2 else (len(encoded), classes), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            ids, lengths, _ = collate_batch([(encoded[i], 0) for i in chunk])
            logits = self._logits(ids, lengths)  # [B] or [B, C]
            result[chunk] = logits[:, 1] - logits[:, 0] if logits.ndim == 2 and classes == 2 else logits
        return result

    def _logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        onnx = self.onnx_small if len(ids) < ONNX_BELOW else self.onnx
        if onnx is not None:
            return onnx(ids.numpy(), lengths.numpy())
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.model(ids.to(self.device), lengths.to(self.device))
        return logits.float().cpu().numpy()

    def explain(self, text: str, method: str = DEFAULT_METHOD, steps: int = DEFAULT_STEPS) -> Dict[str, object]:
        """``predict(text)`` with an ``explanation``: each word's contribution to the log-odds, toward the
        positive class of two classes (the predicted one of more); see src/inference/explain.py."""
        return self.explain_batch([text], method=method, steps=steps)[0]

    def explain_batch(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, method: str = DEFAULT_METHOD,
                      steps: int = DEFAULT_STEPS) -> List[Dict[str, object]]:
        """``explain`` of each text, in input order (``method``: integrated_gradients or occlusion; ``steps``:
        integrated gradients' quadrature points). The LSTM runs in PyTorch here, whatever ``runtime`` is."""
        return explain_batch(self, texts, batch_size, method, steps)


class EnsemblePredictor(_Classifier):
    """Averages P(positive) over several trained models (the same interface as ``SentimentPredictor``).

    Each member reads the reviews with its own vocabulary and truncation, so models
    trained with different settings can be combined. ``preprocessor`` and
    ``max_length`` are the first member's (used for evaluation's length buckets).
    """

    def __init__(self, members: Sequence[SentimentPredictor]):
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = list(members)
        self.class_names = members[0].class_names
        for member in self.members[1:]:
            if member.class_names != self.class_names:
                raise ValueError(f"models of other classes cannot be averaged ({', '.join(self.class_names)} and "
                                 f"{', '.join(member.class_names)})")

    @property
    def preprocessor(self) -> TextPreprocessor:
        return self.members[0].preprocessor

    @property
    def max_length(self) -> int:
        return self.members[0].max_length

    @classmethod
    def from_pretrained(cls, model_dirs: Sequence[Union[str, Path]], device: Optional[Union[str, torch.device]] = None,
                        runtime: str = "auto", precision: str = "auto", lstm_only: bool = False) -> "EnsemblePredictor":
        return cls([SentimentPredictor.from_pretrained(path, device=device, runtime=runtime, precision=precision,
                                                       lstm_only=lstm_only) for path in model_dirs])

    def class_probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return np.mean([member.class_probabilities(texts, batch_size) for member in self.members], axis=0)

    def explain(self, text: str, method: str = DEFAULT_METHOD, steps: int = DEFAULT_STEPS) -> Dict[str, object]:
        return self.explain_batch([text], method=method, steps=steps)[0]

    def explain_batch(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE, method: str = DEFAULT_METHOD,
                      steps: int = DEFAULT_STEPS) -> List[Dict[str, object]]:
        """Refused: an ensemble averages probabilities, so its members' per-word log-odds do not add up to its
        own."""
        raise ExplanationRefused("an ensemble of models cannot explain its predictions (it averages probabilities, "
                                 "so per-word log-odds do not add up); explain with one model directory at a time")


Predictor = Union[SentimentPredictor, EnsemblePredictor]


def load_predictor(model_dirs: Sequence[Union[str, Path]], device: Optional[Union[str, torch.device]] = None,
                   runtime: str = "auto", precision: str = "auto", lstm_only: bool = False) -> Predictor:
    """One model directory gives a ``SentimentPredictor``, several an ``EnsemblePredictor`` (of their LSTMs
    alone with ``lstm_only``)."""
    if len(model_dirs) == 1:
        return SentimentPredictor.from_pretrained(model_dirs[0], device=device, runtime=runtime, precision=precision,
                                                  lstm_only=lstm_only)
    return EnsemblePredictor.from_pretrained(model_dirs, device=device, runtime=runtime, precision=precision,
                                             lstm_only=lstm_only)


def onnx_runners(model_dir: Union[str, Path], runtime: str, precision: str, dtype: Optional[torch.dtype]
                 ) -> Tuple[Optional[OnnxLSTM], Optional[OnnxLSTM]]:
    """The ONNX Runtime sessions of a CPU predictor, for batches of ``ONNX_BELOW`` reviews or more and for
    smaller ones (None: PyTorch at ``dtype``; see ``SentimentPredictor``). ``int8`` takes model.int8.onnx for
    all batches; otherwise model.onnx runs the small ones in float32, and the larger ones too where PyTorch
    does not run in bfloat16."""
    if runtime == "torch":
        return None, None
    if precision == "int8":
        return OnnxLSTM.load(model_dir, required=True, int8=True), None
    float32 = OnnxLSTM.load(model_dir, required=runtime == "onnxruntime")
    return (float32 if dtype is None else None), float32


def _joined(names: Iterable[str]) -> str:
    """``a`` for the same name twice, else ``a+b``."""
    return "+".join(dict.fromkeys(names))


def _label(probabilities: np.ndarray, label: int, class_names: Sequence[str]) -> Dict[str, object]:
    result: Dict[str, object] = {"label": class_names[label],
                                 "probabilities": {name: float(p) for name, p in zip(class_names, probabilities)}}
    if len(class_names) == 2:
        result["probability"] = float(probabilities[1])
    return result


def _require_text(texts: Sequence[object]) -> None:
    if isinstance(texts, str):  # a bare string is a sequence of one-character texts
        raise TypeError("texts must be a list of texts, not one text; use predict(text) for one")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"review {index} is a {type(text).__name__}, not text")


def probabilities_of(scores: np.ndarray) -> np.ndarray:
    """Class probabilities [N, C] from a model's scores: log-odds of the positive class [N] (two classes) or
    logits [N, C] (a softmax, row by row)."""
    if scores.ndim == 1:
        positive = logistic(scores)
        return np.column_stack([1 - positive, positive])
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)

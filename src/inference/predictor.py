"""Classifying reviews with a trained model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from src.data.datasets import collate_batch
from src.data.preprocessing import TextPreprocessor
from src.inference.metrics import logistic
from src.inference.onnx_model import OnnxLSTM
from src.models.lstm_model import LSTMClassifier
from src.models.model_dir import load_model_directory
from src.models.ngram_model import NgramBlend
from src.utils.device import resolve_device

# Measured with bench/predict.py on a 2-core CPU: batches of 64 ran 9% faster than 256
# for the default model; on a GPU larger batches are faster.
DEFAULT_BATCH_SIZE = 64
# "auto": ONNX Runtime on a CPU when the model directory holds a current model.onnx (measured faster
# there with bench/predict.py), else PyTorch
RUNTIMES = ("auto", "torch", "onnxruntime")


class _Classifier:
    """Labels from ``probabilities``, which subclasses provide."""

    def probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        raise NotImplementedError

    def predict_batch(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> List[Dict[str, object]]:
        return [_label(p) for p in self.probabilities(texts, batch_size)]

    def predict(self, text: str) -> Dict[str, object]:
        return self.predict_batch([text])[0]


class SentimentPredictor(_Classifier):
    """``predict("text")`` -> ``{"label": "positive"|"negative", "probability": P(positive)}``.

    Reviews are encoded and cut by the model's own preprocessor, exactly as in
    training (its ``max_length`` and ``truncation``). Batches are formed from
    reviews of similar length, and results come back in input order. A model
    trained with ``--ngram-blend`` also holds an n-gram model, whose log-odds are
    blended with the LSTM's.
    """

    def __init__(self, model: LSTMClassifier, preprocessor: TextPreprocessor,
                 device: Optional[Union[str, torch.device]] = None, ngram_blend: Optional[NgramBlend] = None,
                 onnx: Optional[OnnxLSTM] = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocessor = preprocessor
        self.ngram_blend = ngram_blend
        self.onnx = onnx if self.device.type == "cpu" else None  # the same LSTM, run by ONNX Runtime

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.onnx is not None else "torch"

    @property
    def max_length(self) -> int:
        return self.preprocessor.max_length

    @classmethod
    def from_pretrained(cls, model_dir: Union[str, Path], device: Optional[Union[str, torch.device]] = None,
                        runtime: str = "auto") -> "SentimentPredictor":
        """Load a model directory written by training (``--output-dir``); ``runtime`` is one of ``RUNTIMES``."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        on_cpu = resolve_device(device).type == "cpu"
        if runtime == "onnxruntime" and not on_cpu:
            raise ValueError("the onnxruntime runtime predicts on the CPU; use --device cpu or --runtime torch")
        model, preprocessor = load_model_directory(model_dir)
        onnx = OnnxLSTM.load(model_dir, required=runtime == "onnxruntime") if runtime != "torch" and on_cpu else None
        return cls(model, preprocessor, device=device, ngram_blend=NgramBlend.load(model_dir), onnx=onnx)

    def encode(self, texts: Sequence[str]) -> List[np.ndarray]:
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"review {index} is a {type(text).__name__}, not text")
        return self.preprocessor.encode_for_model(texts)

    def probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """P(positive) for each text, in input order."""
        log_odds = self.lstm_log_odds(texts, batch_size)
        if self.ngram_blend is not None:
            log_odds = self.ngram_blend.combine(log_odds, texts)
        return logistic(log_odds)

    @torch.inference_mode()
    def lstm_log_odds(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """The LSTM's log(P(positive) / P(negative)) for each text, in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        encoded = self.encode(texts)
        order = np.argsort([-len(ids) for ids in encoded], kind="stable")
        result = np.empty(len(encoded), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            ids, lengths, _ = collate_batch([(encoded[i], 0) for i in chunk])
            logits = self._logits(ids, lengths)  # [B] or [B, 2]
            result[chunk] = logits if logits.ndim == 1 else logits[:, 1] - logits[:, 0]
        return result


    def _logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx(ids.numpy(), lengths.numpy())
        return self.model(ids.to(self.device), lengths.to(self.device)).float().cpu().numpy()


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

    @property
    def preprocessor(self) -> TextPreprocessor:
        return self.members[0].preprocessor

    @property
    def max_length(self) -> int:
        return self.members[0].max_length

    @classmethod
    def from_pretrained(cls, model_dirs: Sequence[Union[str, Path]], device: Optional[Union[str, torch.device]] = None,
                        runtime: str = "auto") -> "EnsemblePredictor":
        return cls([SentimentPredictor.from_pretrained(path, device=device, runtime=runtime) for path in model_dirs])

    def probabilities(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return np.mean([member.probabilities(texts, batch_size) for member in self.members], axis=0)


Predictor = Union[SentimentPredictor, EnsemblePredictor]


def load_predictor(model_dirs: Sequence[Union[str, Path]], device: Optional[Union[str, torch.device]] = None,
                   runtime: str = "auto") -> Predictor:
    """One model directory gives a ``SentimentPredictor``, several an ``EnsemblePredictor``."""
    if len(model_dirs) == 1:
        return SentimentPredictor.from_pretrained(model_dirs[0], device=device, runtime=runtime)
    return EnsemblePredictor.from_pretrained(model_dirs, device=device, runtime=runtime)


def _label(probability: float) -> Dict[str, object]:
    return {"label": "positive" if probability >= 0.5 else "negative", "probability": float(probability)}

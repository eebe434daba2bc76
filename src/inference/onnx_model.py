"""The LSTM as an ONNX graph: export, and prediction with ONNX Runtime.

The graph takes ``token_ids`` int64 [B, T] (0 = padding) and ``lengths`` int64 [B]
and returns ``logits`` float32 [B] (or [B, C] for several classes), with dynamic
batch and length axes. Text becomes token ids as the model directory's
``vocab.json`` says (``TextPreprocessor.encode_for_model``: its words, ``max_length``
and truncation); a blended model's n-gram part stays in Python. ``model.onnx``
records the SHA-256 of the ``model.pt`` it was exported from, so an export left
over from other weights is never used.
"""

from __future__ import annotations

import inspect
import io
import logging
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from src.exceptions import CheckpointError
from src.models.model_dir import MODEL_FILE, ONNX_FILE, load_model_directory
from src.utils.download import sha256_of
from src.utils.io import atomic_write

logger = logging.getLogger(__name__)

SOURCE_KEY = "lstm_sentiment.model_sha256"
OPSET = 17


def export_onnx(directory: Union[str, Path]) -> Path:
    """Write ``directory/model.onnx`` from the directory's ``model.pt`` (atomically); returns its path."""
    import onnx

    directory = Path(directory)
    model, _ = load_model_directory(directory)
    words = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]]).remainder(model.config.vocab_size)  # ids the vocabulary has
    ids, lengths = words, torch.tensor([4, 2])  # any shape: the axes are dynamic
    buffer = io.BytesIO()
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():  # the TorchScript exporter warns about its own deprecation and about tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, lengths), buffer, input_names=["token_ids", "lengths"],
                          output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"token_ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                        "logits": {0: "batch"}}, **options)
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {SOURCE_KEY: sha256_of(directory / MODEL_FILE)})
    path = directory / ONNX_FILE
    with atomic_write(path, "wb") as handle:
        handle.write(graph.SerializeToString())
    return path


class OnnxLSTM:
    """``model.onnx`` in an ONNX Runtime session: ``(token_ids, lengths) -> logits`` as NumPy arrays."""

    def __init__(self, session):
        self.session = session

    @classmethod
    def load(cls, directory: Union[str, Path], required: bool = False) -> Optional["OnnxLSTM"]:
        """The directory's exported LSTM; None (or, if ``required``, a CheckpointError saying why) when
        onnxruntime is not installed, there is no ``model.onnx``, or it was exported from other weights."""
        directory = Path(directory)
        reason = _unusable(directory)
        if reason is None:
            import onnxruntime

            try:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = torch.get_num_threads()  # one thread setting for both runtimes
                session = onnxruntime.InferenceSession(str(directory / ONNX_FILE), sess_options=options,
                                                       providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own exception types for a bad file
                reason = f"{ONNX_FILE} does not load ({str(err).splitlines()[0]})"
            else:
                if session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY) == sha256_of(directory / MODEL_FILE):
                    return cls(session)
                reason = f"{ONNX_FILE} was exported from other weights than {MODEL_FILE}"
        if required:
            raise CheckpointError(f"cannot predict with ONNX Runtime from {directory}: {reason}; run "
                                  f"python -m src.inference.export --model-dir {directory}")
        logger.info("predicting with PyTorch: %s", reason)
        return None

    def __call__(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        feed = {"token_ids": np.asarray(token_ids, dtype=np.int64), "lengths": np.asarray(lengths, dtype=np.int64)}
        return self.session.run(None, feed)[0]


def _unusable(directory: Path) -> Optional[str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    if not (directory / ONNX_FILE).is_file():
        return f"no {ONNX_FILE} in the model directory"
    return None

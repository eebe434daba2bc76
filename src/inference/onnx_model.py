"""The LSTM as an ONNX graph: export, and prediction with ONNX Runtime.

The graph takes ``token_ids`` int64 [B, T] (0 = padding) and ``lengths`` int64 [B]
and returns ``logits`` float32 [B] (or [B, C] for several classes), with dynamic
batch and length axes. Text becomes token ids as the model directory's
``vocab.json`` says (``TextPreprocessor.encode_for_model``: its words, ``max_length``
and truncation); a blended model's n-gram part stays in Python. ``model.int8.onnx``
is the same graph after ONNX Runtime's dynamic quantization: the LSTM's and the
linear layers' weights in int8, activations quantized on each call (the embedding
stays float32). Both files record the SHA-256 of the ``model.pt`` they were
exported from, so an export left over from other weights is never used, and the
SHA-256 of their own bytes (taken with that record's 64 characters as zeros), so a
damaged file is never run: a flipped bit in a weight would change every prediction
without an error.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from src.exceptions import CheckpointError
from src.models.model_dir import MODEL_FILE, ONNX_FILE, ONNX_INT8_FILE, load_model_directory
from src.utils.download import sha256_of
from src.utils.io import atomic_write

logger = logging.getLogger(__name__)

SOURCE_KEY = "lstm_sentiment.model_sha256"
DIGEST_KEY = "lstm_sentiment.file_sha256"  # the file's own SHA-256, taken with its value as UNSET_DIGEST
UNSET_DIGEST = "0" * 64
OPSET = 17


def export_onnx(directory: Union[str, Path]) -> List[Path]:
    """Write ``directory/model.onnx`` from the directory's ``model.pt`` and, where onnxruntime is installed,
    ``model.int8.onnx`` from it (each atomically); returns the paths written."""
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
    source = {SOURCE_KEY: sha256_of(directory / MODEL_FILE)}
    written = [_write_graph(graph, source, directory / ONNX_FILE)]
    if _onnxruntime_missing() is None:
        written.append(_write_graph(_quantized(graph), source, directory / ONNX_INT8_FILE))
    return written


def _quantized(graph):
    """``graph`` with int8 weights (ONNX Runtime's dynamic quantization; its LSTM nodes become
    DynamicQuantizeLSTM)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantization_logger = logging.getLogger()  # the quantizer advises pre-processing through the root logger
    level = quantization_logger.level
    quantization_logger.setLevel(max(level, logging.ERROR))
    try:
        with tempfile.TemporaryDirectory(prefix="lstm-sentiment-int8-") as scratch:
            path = Path(scratch) / ONNX_INT8_FILE
            quantize_dynamic(graph, path, weight_type=QuantType.QInt8)
            quantized = onnx.load(str(path))
    finally:
        quantization_logger.setLevel(level)
    return quantized


def _write_graph(graph, source: Dict[str, str], path: Path) -> Path:
    """Write ``graph`` marked with ``source`` and its own digest (``DIGEST_KEY``)."""
    import onnx

    onnx.helper.set_model_props(graph, {**source, DIGEST_KEY: UNSET_DIGEST})
    data = graph.SerializeToString()
    at = data.rindex(UNSET_DIGEST.encode())  # the properties are serialised after the graph's weights
    digest = hashlib.sha256(data).hexdigest().encode()
    with atomic_write(path, "wb") as handle:
        handle.write(data[:at] + digest + data[at + len(digest):])
    return path


def _checked_session(directory: Path, name: str, int8: bool) -> Tuple[Optional[Any], Optional[str]]:
    """An ONNX Runtime session of ``directory/name`` if the file is intact and exported from the directory's
    ``model.pt``; else None and why not."""
    try:
        session = _session(directory / name, parallel_directions=int8)
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        return None, f"{name} does not load ({str(err).splitlines()[0]})"
    recorded = session.get_modelmeta().custom_metadata_map
    reason = _damage(directory / name, recorded.get(DIGEST_KEY))
    if reason is None and recorded.get(SOURCE_KEY) != sha256_of(directory / MODEL_FILE):
        reason = f"{name} was exported from other weights than {MODEL_FILE}"
    return (session, None) if reason is None else (None, reason)


def _damage(path: Path, recorded: Optional[str]) -> Optional[str]:
    """Why the file at ``path`` is not the one written with the digest ``recorded``; None if it is."""
    if recorded is None:
        return f"{path.name} was exported without a checksum of its own (by an earlier version)"
    data = path.read_bytes()
    at = data.rfind(recorded.encode()) if len(recorded) == len(UNSET_DIGEST) else -1
    if at < 0 or hashlib.sha256(data[:at] + UNSET_DIGEST.encode() + data[at + len(recorded):]).hexdigest() != recorded:
        return f"{path.name} is damaged (its bytes do not match the checksum it was written with)"
    return None


class OnnxLSTM:
    """An exported LSTM in an ONNX Runtime session: ``(token_ids, lengths) -> logits`` as NumPy arrays.

    ``precision`` is its weights': float32, or int8 for ``model.int8.onnx``. The int8 graph quantizes its
    inputs with one scale per tensor, so a review's score would depend on the other reviews of its batch: it
    reads one review per run instead (``per_review``), and runs the two directions' LSTM nodes at once, one
    thread each (bench/predict.py: its fastest way through a single review).
    """

    def __init__(self, session, precision: str = "float32", per_review: bool = False):
        self.session = session
        self.precision = precision
        self.per_review = per_review

    @classmethod
    def load(cls, directory: Union[str, Path], required: bool = False, int8: bool = False) -> Optional["OnnxLSTM"]:
        """The directory's exported LSTM (``model.int8.onnx`` with ``int8``); None (or, if ``required``, a
        CheckpointError saying why) when onnxruntime is not installed, the file is missing, damaged, or was
        exported from other weights. A file that is there but cannot be used is a warning: PyTorch predicts
        instead, more slowly."""
        directory = Path(directory)
        name = ONNX_INT8_FILE if int8 else ONNX_FILE
        absent = _onnxruntime_missing() or (None if (directory / name).is_file() else f"no {name} in the directory")
        session, unusable = (None, None) if absent else _checked_session(directory, name, int8)
        if session is not None:
            return cls(session, "int8", per_review=True) if int8 else cls(session)
        reason = absent or unusable
        if required:
            raise CheckpointError(f"cannot predict with ONNX Runtime from {directory}: {reason}; run "
                                  f"python -m src.inference.export --model-dir {directory}")
        logger.log(logging.INFO if absent else logging.WARNING, "not predicting with %s: %s%s", name, reason,
                   "" if absent else f" (python -m src.inference.export --model-dir {directory} writes it again)")
        return None

    def __call__(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        token_ids, lengths = np.asarray(token_ids, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
        if not self.per_review:
            return self._run(token_ids, lengths)
        return np.concatenate([self._run(token_ids[row: row + 1, :length], lengths[row: row + 1])
                               for row, length in enumerate(lengths)])

    def _run(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"token_ids": token_ids, "lengths": lengths})[0]


def _session(path: Path, parallel_directions: bool):
    """An ONNX Runtime CPU session of ``path`` on PyTorch's thread count (one setting for both runtimes)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = torch.get_num_threads()
    if parallel_directions:
        options.execution_mode = onnxruntime.ExecutionMode.ORT_PARALLEL
        options.intra_op_num_threads, options.inter_op_num_threads = 1, threads
    else:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _onnxruntime_missing() -> Optional[str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None

"""A trained model as a self-contained directory that loads without any training state.

Layout: ``model.pt`` (format version, model config, weights; loaded with
``weights_only=True``), ``vocab.json`` (the preprocessor), ``config.json`` (the
resolved training configuration), ``metrics.json`` (history and test metrics)
and, for a model trained with ``--ngram-blend``, ``ngram_model.pt``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from src.data.preprocessing import TextPreprocessor
from src.exceptions import CheckpointError
from src.models.lstm_model import LSTMClassifier
from src.models.ngram_model import NGRAM_FILE, NgramBlend
from src.training.checkpoint_io import load_state, save_state
from src.utils.io import atomic_write_json

MODEL_FILE, VOCAB_FILE, CONFIG_FILE, METRICS_FILE = "model.pt", "vocab.json", "config.json", "metrics.json"


def save_model_directory(directory: Union[str, Path], model: LSTMClassifier, preprocessor: TextPreprocessor,
                         training_config: Optional[Dict[str, Any]] = None,
                         metrics: Optional[Dict[str, Any]] = None,
                         ngram_blend: Optional[NgramBlend] = None) -> Path:
    """Write the model directory (every file atomically); returns its path.

    An ``ngram_model.pt`` of an earlier run is removed first, so that even an
    interrupted write never pairs this LSTM with another run's n-gram model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    (directory / NGRAM_FILE).unlink(missing_ok=True)
    save_state(directory / MODEL_FILE, {"model_config": asdict(model.config), "model_state": weights})
    if ngram_blend is not None:
        ngram_blend.save(directory)
    preprocessor.save(directory / VOCAB_FILE)
    atomic_write_json(directory / CONFIG_FILE, training_config or {})
    atomic_write_json(directory / METRICS_FILE, metrics or {})
    return directory


def load_model_directory(directory: Union[str, Path], device: Union[str, torch.device] = "cpu"
                         ) -> Tuple[LSTMClassifier, TextPreprocessor]:
    """Rebuild the model (in eval mode, on ``device``) and its preprocessor."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise CheckpointError(f"{directory} is not a model directory (no {MODEL_FILE}); "
                              "pass the --output-dir of a finished training run")
    state = load_state(directory / MODEL_FILE)
    try:
        model = LSTMClassifier.from_config(state["model_config"])
        model.load_state_dict(state["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{directory / MODEL_FILE} does not hold a usable model ({reason})") from None
    preprocessor = TextPreprocessor.load(directory / VOCAB_FILE)
    if preprocessor.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{directory}: the vocabulary has {preprocessor.vocab_size} words but the model "
                              f"expects {model.config.vocab_size}; the directory mixes files of two runs")
    return model.to(device).eval(), preprocessor

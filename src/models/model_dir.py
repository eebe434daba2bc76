"""A trained model as a self-contained directory that loads without any training state.

Layout: ``model.pt`` (format version, model config, weights, and the SHA-256 of the
directory's other files of the run; loaded with ``weights_only=True``), ``vocab.json`` (the
preprocessor: vocabulary, ``max_length``, ``eval_max_length``, ``truncation``), ``config.json`` (the
resolved training configuration), ``metrics.json`` (history and test metrics),
for a model trained with ``--ngram-blend``, ``ngram_model.pt``, ``calibration.json`` (the
temperature its scores are divided by), ``MODEL_CARD.md``, and, once exported, ``model.onnx`` and
``model.int8.onnx``.

The directory is written as a whole: into a temporary sibling, then swapped into
place, so a reader sees the old model or the new one. ``model.pt`` names the exact
files it was saved with, so a directory that mixes two runs is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from src.config import TEMPERATURE_RANGE, default_of
from src.data.preprocessing import TextPreprocessor
from src.exceptions import CheckpointError, DataError
from src.models.lstm_model import LSTMClassifier, check_vocabulary_fits
from src.models.ngram_model import NGRAM_FILE, NgramBlend
from src.utils.checkpoint_io import WEIGHTS_FORMAT_VERSIONS, load_state, save_state
from src.utils.download import sha256_of
from src.utils.io import atomic_write_json, atomic_write_text, replace_directory, staging_directory

logger = logging.getLogger(__name__)

MODEL_FILE, VOCAB_FILE, CONFIG_FILE, METRICS_FILE = "model.pt", "vocab.json", "config.json", "metrics.json"
ONNX_FILE = "model.onnx"  # written by src.inference.export; it names the model.pt it came from
ONNX_INT8_FILE = "model.int8.onnx"  # the same graph with int8 LSTM and linear weights, written beside it
CALIBRATION_FILE, CARD_FILE = "calibration.json", "MODEL_CARD.md"
# what calibration.json holds: the temperature, where it was fitted, and the calibration error it leaves
CALIBRATION_KEYS = ("temperature", "fitted_on", "validation_reviews", "validation_ece_before", "validation_ece_after")
EVALUATION_FILES = ("evaluation.json", "confusion_matrix.png", "roc_curve.png", "accuracy_by_length.png",
                    "reliability_diagram.png")
# besides model.pt, the files of one run (MODEL_CARD.md is not one: people edit it, and it changes no prediction)
RUN_FILES = (VOCAB_FILE, NGRAM_FILE, CONFIG_FILE, METRICS_FILE, CALIBRATION_FILE)
MODEL_DIR_FILES = (MODEL_FILE, ONNX_FILE, ONNX_INT8_FILE, CARD_FILE) + RUN_FILES + EVALUATION_FILES


def check_output_directory(directory: Union[str, Path]) -> None:
    """Refuse to write a model over a folder that holds anything but a model directory's files,
    which the swap would delete. Call it before training, so a bad folder costs nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"--output-dir {directory} is a file, not a folder; choose a folder for the model")
    foreign = sorted(p.name for p in directory.iterdir() if p.name not in MODEL_DIR_FILES) if directory.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CheckpointError(f"--output-dir {directory} holds files that are not a model's ({shown}); writing the "
                              "model there would replace them: choose an empty or new folder")


def save_model_directory(directory: Union[str, Path], model: LSTMClassifier, preprocessor: TextPreprocessor,
                         training_config: Optional[Dict[str, Any]] = None,
                         metrics: Optional[Dict[str, Any]] = None,
                         ngram_blend: Optional[NgramBlend] = None, calibration: Optional[Dict[str, Any]] = None,
                         card: Optional[str] = None) -> Path:
    """Write the model directory as a whole (staged in a temporary sibling, then swapped in);
    ``calibration`` holds the ``temperature``, ``card`` the text of MODEL_CARD.md."""
    directory = Path(directory).resolve()
    check_output_directory(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):  # staged by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = staging_directory(directory.parent, f".{directory.name}.", ".tmp")
    try:
        preprocessor.save(staging / VOCAB_FILE)
        if ngram_blend is not None:
            ngram_blend.save(staging)
        atomic_write_json(staging / CONFIG_FILE, training_config or {})
        atomic_write_json(staging / METRICS_FILE, metrics or {})
        if calibration is not None:
            atomic_write_json(staging / CALIBRATION_FILE, calibration)
        if card is not None:
            atomic_write_text(staging / CARD_FILE, card)
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_state(staging / MODEL_FILE, {"model_config": asdict(model.config), "model_state": weights,
                                          "manifest": _manifest(staging)})
        replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _manifest(directory: Path) -> Dict[str, Optional[str]]:
    """SHA-256 of each file of the run (None: the file must be absent)."""
    return {name: sha256_of(directory / name) if (directory / name).is_file() else None for name in RUN_FILES}


def _check_manifest(directory: Path, manifest: Any) -> None:
    """Refuse a directory whose files are not the ones its model.pt was saved with."""
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{directory / MODEL_FILE} has no valid list of its directory's files")
    found = _manifest(directory)
    missing = [name for name in RUN_FILES if manifest.get(name) is not None and found[name] is None]
    if missing:
        raise CheckpointError(f"{directory} lacks {', '.join(missing)}, saved with its {MODEL_FILE}; "
                              "copy the whole directory of the run again")
    mixed = [name for name in RUN_FILES if name in manifest and found[name] != manifest[name]]
    if mixed:
        raise CheckpointError(f"{directory} mixes files of two training runs or holds a damaged one "
                              f"({', '.join(mixed)} not the one {MODEL_FILE} was saved with); copy the whole "
                              "directory of one run again")


def load_model_directory(directory: Union[str, Path], device: Union[str, torch.device] = "cpu"
                         ) -> Tuple[LSTMClassifier, TextPreprocessor]:
    """Rebuild the model (in eval mode, on ``device``) and its preprocessor."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise CheckpointError(f"{directory} is not a model directory (no {MODEL_FILE}); "
                              "pass the --output-dir of a finished training run")
    state = load_state(directory / MODEL_FILE, versions=WEIGHTS_FORMAT_VERSIONS)
    if state["format_version"] > 1:  # version 1 directories were written file by file, without a manifest
        _check_manifest(directory, state.get("manifest"))
    try:
        model = LSTMClassifier.from_weights(state["model_config"], state["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{directory / MODEL_FILE} does not hold a usable model ({reason})") from None
    preprocessor = _load_preprocessor(directory)
    try:
        check_vocabulary_fits(preprocessor.vocab_size, model.config.vocab_size)
    except ValueError as err:
        raise CheckpointError(f"{directory}: {str(err).split(';')[0]}; the directory mixes files of two runs") from None
    return model.to(device).eval(), preprocessor


def _load_preprocessor(directory: Path) -> TextPreprocessor:
    """``vocab.json``; one of version 1 takes ``max_length`` and ``truncation`` from ``config.json``,
    where training stored them then."""
    return TextPreprocessor.load(directory / VOCAB_FILE, legacy_encoding=lambda: _legacy_encoding(directory))


def _legacy_encoding(directory: Path) -> Dict[str, Any]:
    config = training_config(directory)
    return {name: config[name] for name in ("max_length", "truncation") if name in config}


def training_config(directory: Union[str, Path]) -> Dict[str, Any]:
    """The settings the model was trained with (``config.json``; {} without one)."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not a readable settings file ({err})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path} does not hold a mapping of settings")
    return config


def load_temperature(directory: Union[str, Path]) -> float:
    """The temperature of ``calibration.json``; 1.0 (none) for a directory without one."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    try:
        temperature = json.loads(path.read_text(encoding="utf-8"))["temperature"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a readable calibration file ({type(err).__name__}: {err})") from None
    low, high = TEMPERATURE_RANGE
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not low <= temperature <= high:
        raise CheckpointError(f"{path}: the temperature must be a number from {low} to {high}, got {temperature!r}; "
                              "copy the whole model directory of the run again")
    return float(temperature)


def trained_column(directory: Union[str, Path], name: str) -> str:
    """The column ``name`` ("text_column" or "label_column") of the model's training data, so that files
    like them are read the same way; the setting's default for models trained before it existed."""
    value = training_config(directory).get(name)
    return value if isinstance(value, str) and value else default_of(name)

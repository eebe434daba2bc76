"""The whole training run behind ``train_model.py``: data, model, training, test, model directory.

The settings come as a ``TrainConfig`` (``src/config.py``). The resolved config is
written to the run directory and the model directory, so every run can be repeated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from src.config import TEMPERATURE_RANGE, TrainConfig, shown
from src.data.datasets import ReviewDataset
from src.data.imdb import ReviewData, load_unlabeled_reviews
from src.data.loaders import DataSource, create_data_loaders, split_reviews
from src.data.preprocessing import TextPreprocessor
from src.data.tables import read_texts
from src.exceptions import (CheckpointError, DataError, FormatVersionError, ResumeRefused, TimeLimitReached,
                            TrainingError)
from src.inference.metrics import calibration, fit_temperature, logistic, metrics_for
from src.inference.onnx_model import export_onnx
from src.inference.predictor import SentimentPredictor, prediction_dtype, probabilities_of
from src.models.lstm_model import LSTMClassifier, LSTMConfig
from src.models.model_dir import CALIBRATION_KEYS, check_output_directory, save_model_directory
from src.models.ngram_model import Blend, NgramBlend, NgramModel, out_of_fold_log_odds
from src.training.adversarial import default_adversarial_eps
from src.training.averaging import describe_final_weights, settle_final_weights
from src.training.checkpoint_manager import CheckpointManager
from src.training.distributed import DistributedContext, any_rank, barrier, init_distributed, max_over_ranks, shutdown
from src.training.glove_loader import GloVeLoader, initialize_model_with_glove
from src.training.lm_pretraining import PretrainConfig, pretrain_language_model
from src.training.model_card import model_card
from src.training.precision import cpu_training_dtype
from src.training.run_control import (LOCK_NAME, RunLock, StopSignals, TimeBudget, check_memory, check_room,
                                      ensure_writable, signals_raise)
from src.training.trainer import MID_EPOCH_NAME, Trainer, create_trainer, interrupted
from src.training.virtual_adversarial import UnlabeledBatches
from src.utils.checkpoint_io import load_state, save_state
from src.utils.device import device_name, resolve_device
from src.utils.io import atomic_write_json, missing_folders, removed_on_failure
from src.utils.plots import plot_training_curves
from src.utils.seed import set_seed

logger = logging.getLogger(__name__)

PRETRAINING_CHECKPOINT = "checkpoint_pretraining.pt"  # language-model pretraining in progress or done
TEACHER_FOLDS = 5  # --ngram-teacher: each training review scored by a model of the other four fifths
LOG_NAME = "train.log"  # the run's log, in its checkpoint folder
NGRAM_FILE_BYTES = 20_000_000  # room kept for ngram_model.pt (13 MB for the full IMDB training split)


def configure_logging(run_dir: Path, quiet: bool, main_process: bool = True) -> None:
    """Log to the console (warnings only with ``quiet``) and to ``run_dir/LOG_NAME``.

    Under torchrun only rank 0 writes the log file, informational lines and warnings (every rank reads the
    same data and settings, so the others' warnings would repeat rank 0's); errors come from any rank."""
    run_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_lstm_sentiment", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR if not main_process else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handlers = [console]
    if main_process:
        logfile = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
        logfile.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(logfile)
    for handler in handlers:
        handler._lstm_sentiment = True
        root.addHandler(handler)


def _resume_position(path: Path) -> Optional[Tuple[int, int]]:
    """(completed epochs, batches done in the next one) of a loadable checkpoint, else None.

    A checkpoint of another format version stops the search: starting afresh would
    overwrite that run's files."""
    try:
        state = load_state(path)
    except FormatVersionError:
        raise
    except CheckpointError as err:
        logger.warning("skipping %s", err)
        return None
    progress = state.get("epoch_progress") or {}
    return int(state.get("epoch", 0)), int(progress.get("batches_done", 0))


def find_resume_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    """The checkpoint furthest into training in ``checkpoint_dir`` that loads (None if none does).

    Candidates: the mid-epoch checkpoint, then the registered epoch checkpoints
    (newest first), then any other epoch checkpoint file (left over from an earlier
    run, so only a fallback). Damaged files are skipped with a warning.
    """
    registered = [Path(e["path"]) for e in reversed(CheckpointManager(checkpoint_dir).list_checkpoints())]
    others = sorted(set(checkpoint_dir.glob("checkpoint_epoch_*.pt")) - set(registered), reverse=True)
    best: Optional[Tuple[Tuple[int, int], Path]] = None
    mid_epoch = checkpoint_dir / MID_EPOCH_NAME
    if mid_epoch.is_file():
        position = _resume_position(mid_epoch)
        best = (position, mid_epoch) if position else None
    for path in registered + others:
        position = _resume_position(path)
        if position is not None:
            if best is None or position > best[0]:
                best = (position, path)
            break
    return best[1] if best is not None else None


def _resume_source(cfg: TrainConfig) -> Optional[Dict[str, Any]]:
    """Load the checkpoint named by ``--resume`` (path or ``auto``), or None.

    A checkpoint whose run had other settings that shape the data or the model is
    refused (ResumeRefused, exit code 2): resuming would silently train another model."""
    if not cfg.resume:
        return None
    path = find_resume_checkpoint(Path(cfg.checkpoint_dir)) if cfg.resume == "auto" else Path(cfg.resume)
    pretraining = Path(cfg.checkpoint_dir) / PRETRAINING_CHECKPOINT
    if path is None and pretraining.is_file():  # stopped before the first epoch's checkpoint
        path = pretraining
    if path is None:
        logger.warning("--resume auto: no loadable checkpoint in %s; starting a new run", cfg.checkpoint_dir)
        return None
    state = load_state(path)
    if state.get("preprocessor") is None or state.get("model_config") is None:
        raise CheckpointError(f"{path} lacks the vocabulary or model config needed to resume the run")
    try:  # before a model of the config's size is built
        LSTMConfig.from_dict(state["model_config"]).check_weights(state.get("model_state"))
    except (AttributeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not hold a usable model ({err})") from None
    saved = state.get("run_config") or {}
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} does not hold a usable run configuration (a {type(saved).__name__})")
    changes, adopted = cfg.settle_resume(saved)
    if changes:
        listed = ", ".join(f"{flag} (checkpoint {shown(old)}, now {shown(new)})"
                           for flag, (old, new) in changes.items())
        raise ResumeRefused(f"cannot resume from {path}: this run changes {listed}; leave them out or give the "
                            "checkpoint's values, or start a new run in another --checkpoint-dir")
    try:  # the checkpoint's settings that this run takes over obey the same rules as given ones
        cfg.validate()
    except ValueError as err:
        raise CheckpointError(f"{path} holds settings that are not valid ({err})") from None
    if adopted:
        logger.info("resuming with the checkpoint's %s", ", ".join(f"{flag} {value!r}" for flag, value in adopted.items()))
    state["path"] = path
    return state


def _data_fingerprint(train_loader, val_loader) -> Dict[str, str]:
    return {"train": train_loader.dataset.fingerprint(), "validation": val_loader.dataset.fingerprint()}


def _check_resumed_data(resume: Dict[str, Any], fingerprint: Dict[str, str], class_names: Sequence[str]) -> None:
    classes = LSTMConfig.from_dict(resume["model_config"]).classes
    if tuple(classes) != tuple(class_names):
        raise ResumeRefused(f"cannot resume from {resume['path']}: its model has the classes {', '.join(classes)} "
                            f"but the data have {', '.join(class_names)}; start a new run in another --checkpoint-dir")
    saved = (resume.get("run_config") or {}).get("data_fingerprint")
    if saved is None:  # written through the Python API: nothing to compare with
        logger.warning("%s records no fingerprint of its data; cannot check that the data are the same",
                       resume["path"])
    elif saved != fingerprint:
        raise ResumeRefused(f"cannot resume from {resume['path']}: the training data changed since it was written "
                            "(other reviews or labels in the training or validation split); start a new run in "
                            "another --checkpoint-dir")


def run_training(cfg: TrainConfig) -> Dict[str, Any]:
    """Train, evaluate the best model on the test split and write the model directory.

    Under torchrun every process trains its shard; rank 0 writes all files, evaluates
    on the test split and returns the metrics, the other ranks return an empty dict.
    """
    cfg.validate()
    context = init_distributed()
    try:
        return _run(cfg, context)
    finally:
        shutdown()


def _run(cfg: TrainConfig, context: Optional[DistributedContext]) -> Dict[str, Any]:
    """Rank 0 holds the run lock from before its first write in the run directory."""
    started = time.perf_counter()  # --max-minutes counts from here
    main_process = context is None or context.rank == 0
    run_dir = Path(cfg.checkpoint_dir)
    own = _OwnData(None, None)
    made: List[Path] = []
    if main_process:
        if not cfg.resume:  # a resumed run's data are the checkpoint's, checked against its fingerprint
            own = _read_own_data(cfg)
        made = missing_folders(run_dir)
        ensure_writable(run_dir)
    with RunLock(run_dir) if main_process else contextlib.nullcontext():
        # a run that fails before it saves anything leaves no checkpoint folder it made, only its message;
        # removed while this run holds the folder's lock (never by one that could not take it)
        with removed_on_failure(made, (LOCK_NAME, LOG_NAME)):
            return _run_locked(cfg, context, main_process, run_dir, started, own)


def _run_locked(cfg: TrainConfig, context: Optional[DistributedContext], main_process: bool,
                run_dir: Path, started: float, own: _OwnData) -> Dict[str, Any]:
    configure_logging(run_dir, cfg.quiet, main_process)
    if main_process:
        check_output_directory(cfg.output_dir)
    device = resolve_device(context.device if context else cfg.device)
    if device.type == "cpu":
        cpu_training_dtype(cfg.precision)  # refused here, before the data are read, where the CPU lacks it
    set_seed(cfg.seed)
    resume = _resume_source(cfg)  # a resumed run takes its checkpoint's --adversarial-eps
    if cfg.adversarial_eps is None:
        cfg.adversarial_eps = default_adversarial_eps(device, cfg.precision)
    if cfg.use_glove and resume is None and main_process:  # a missing or wrong GloVe file fails before the data
        GloVeLoader(cfg.glove_cache_dir, progress=not cfg.quiet).download_glove(cfg.glove_corpus, cfg.glove_dim)
    train_loader, val_loader, test_loader, preprocessor = _load_data(cfg, context, resume, own.splits)
    fingerprint = _data_fingerprint(train_loader, val_loader)
    class_names = train_loader.dataset.class_names
    if resume is not None:
        _check_resumed_data(resume, fingerprint, class_names)
    if cfg.ngram_teacher:
        train_loader.dataset.targets = _teacher_targets(cfg, train_loader.dataset)
    run_config = {**asdict(cfg), "data_fingerprint": fingerprint}
    if main_process:
        _check_room_for_outputs(LSTMConfig.from_settings(cfg, preprocessor.vocab_size, class_names), cfg, run_dir,
                                device)
    corpus = _UnlabeledCorpus(cfg, preprocessor, train_loader.dataset.token_ids, own.take_unlabeled())
    budget = _time_budget(cfg, started, resume)
    model, extra = _prepare_model(cfg, context, resume, preprocessor, train_loader, main_process, run_config, corpus,
                                  budget)
    if resume is not None and "pretraining" in resume:
        resume = None  # pretraining is done; training starts from its first epoch
    if main_process:
        atomic_write_json(run_dir / "config.json", asdict(cfg))
    trainer = create_trainer(
        model, train_loader, val_loader, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        scheduler_type=cfg.scheduler, gradient_clip=cfg.gradient_clip, checkpoint_dir=run_dir,
        optimizer_type=cfg.optimizer, epochs=cfg.epochs, device=context.device if context else cfg.device,
        accumulation_steps=cfg.accumulation_steps, use_amp=cfg.amp, max_checkpoints=cfg.max_checkpoints,
        save_best_n=cfg.save_best_n, monitor=cfg.monitor, min_delta=cfg.min_delta, preprocessor=preprocessor,
        progress=not cfg.quiet, run_config=run_config,
        save_every_steps=cfg.save_every_steps, detect_anomaly=cfg.detect_anomaly, adversarial_eps=cfg.adversarial_eps,
        precision=cfg.precision, class_weights=_class_weights(cfg, train_loader.dataset),
        vat_eps=cfg.vat_eps, unlabeled=corpus.batches(context) if cfg.vat_eps else None,
        layer_lr_decay=cfg.layer_lr_decay, gradual_unfreezing=cfg.gradual_unfreezing,
        label_smoothing=cfg.label_smoothing, plateau_patience=cfg.plateau_patience,
        restore_best_on_plateau=cfg.restore_best_on_plateau, max_minutes=cfg.max_minutes,
        run_started=budget.run_started(), tensorboard_dir=run_dir / "tensorboard" if _tensorboard_wanted(cfg) else None)
    history = _train(trainer, cfg, resume)
    with signals_raise(lambda signum: interrupted(signum, "after training, while finishing the run (weight "
                                                  "averaging, n-gram fit, test evaluation, model directory)",
                                                  _latest(trainer))):
        final_weights = settle_final_weights(trainer, cfg.average_epochs)
        if not main_process:
            return {}
        return _finish(trainer, cfg, (train_loader, val_loader, test_loader), preprocessor, history,
                       {**extra, "final_weights": final_weights})


@dataclass
class _OwnData:
    """Your own data files as read before the run starts (None where there are none, or not read yet)."""

    splits: Optional[Tuple[ReviewData, ReviewData, ReviewData]]  # training, validation, test
    unlabeled: Optional[List[str]]  # --unlabeled's texts, kept only until they are encoded

    def take_unlabeled(self) -> Optional[List[str]]:
        """The unlabeled texts, handed over once: they are encoded once, so they are not held here for the
        rest of the run."""
        texts, self.unlabeled = self.unlabeled, None
        return texts


class _UnlabeledCorpus:
    """The unlabeled texts (``texts`` if read already) encoded, then the training reviews: what language-model
    pretraining and virtual adversarial training read. Read and encoded once, when first asked for."""

    def __init__(self, cfg: TrainConfig, preprocessor: TextPreprocessor, train_ids: Sequence[np.ndarray],
                 texts: Optional[List[str]] = None):
        self.cfg, self.preprocessor, self.train_ids, self._texts = cfg, preprocessor, train_ids, texts
        self._reviews: Optional[List[np.ndarray]] = None
        self.unlabeled_count = 0

    def reviews(self) -> List[np.ndarray]:
        if self._reviews is None:
            texts = _unlabeled_texts(self.cfg) if self._texts is None else self._texts
            if self.cfg.max_train_samples is not None:  # a quick run reads no more unlabeled reviews than labeled
                texts = texts[: self.cfg.max_train_samples]
            self.unlabeled_count, self._texts = len(texts), None
            self._reviews = self.preprocessor.encode_batch(texts) + list(self.train_ids)
        return self._reviews

    def batches(self, context: Optional[DistributedContext]) -> UnlabeledBatches:
        """Virtual adversarial training's batches: the reviews cut as training cuts them (``--max-length``)."""
        reviews = [self.preprocessor.truncate(ids) for ids in self.reviews()]
        self._reviews = None  # pretraining is over: only the cut copies are kept
        logger.info("virtual adversarial training: %d unlabeled reviews (%d of them the training reviews)",
                    len(reviews), len(self.train_ids))
        return UnlabeledBatches(reviews, self.cfg.batch_size, self.cfg.seed, *((context.rank, context.world_size)
                                                                              if context else (0, 1)))


def _read_own_data(cfg: TrainConfig) -> _OwnData:
    """Read and check your own data files (and the validation split) before anything is written: a bad
    row costs nothing, and the run then uses what was read here. IMDB is checked as it is loaded, after
    its download."""
    source = DataSource.from_config(cfg)
    splits = None
    if source.own_files() is not None:
        splits = split_reviews(source, cfg.validation_split, cfg.seed, cfg.max_train_samples, cfg.max_test_samples)
    reads_unlabeled = bool(cfg.pretrain_lm_epochs or cfg.vat_eps)
    if cfg.unlabeled and not reads_unlabeled:
        logger.warning("--unlabeled is read by language-model pretraining and virtual adversarial training "
                       "only, which --pretrain-lm-epochs 0 and --vat-eps 0 turn off: %s is not used", cfg.unlabeled)
    unlabeled = read_texts(cfg.unlabeled, cfg.text_column) if cfg.unlabeled and reads_unlabeled else None
    return _OwnData(splits, unlabeled)


def _latest(trainer: Trainer) -> Path:
    """The checkpoint a resume after training starts from (it then only finishes the run)."""
    return Path(trainer.checkpoint_manager.latest_checkpoint() or trainer.checkpoint_dir)


def _class_weights(cfg: TrainConfig, train: ReviewDataset) -> Optional[List[float]]:
    """With ``--class-weights balanced``: each class's weight, ``reviews / (classes * reviews of the class)``."""
    if cfg.class_weights == "none":
        return None
    counts = np.bincount(train.labels, minlength=len(train.class_names))
    weights = (len(train.labels) / (len(counts) * np.maximum(counts, 1))).tolist()
    logger.info("class weights: %s", ", ".join(f"{name} {w:.3f}" for name, w in zip(train.class_names, weights)))
    return weights


def _check_room_for_outputs(settings: LSTMConfig, cfg: TrainConfig, run_dir: Path, device: torch.device) -> None:
    """Before any work: memory for the model, and both output folders writable, with room for what they will
    hold (estimated from the model's size: a checkpoint holds the weights, two Adam moments and the best
    weights; training on the CPU keeps those and the gradients in memory, on a GPU the host builds the model)."""
    shapes = settings.weight_shapes()
    weight_bytes = 4 * sum(int(np.prod(shape)) for shape in shapes.values())
    check_memory((5 if device.type == "cpu" else 1) * weight_bytes, "the model",
                 "use a smaller --hidden-dim, --embedding-dim, --n-layers or --max-vocab-size")
    check_room(run_dir, 4 * weight_bytes, "a checkpoint", "--checkpoint-dir")
    output_parent = Path(cfg.output_dir).resolve().parent
    ensure_writable(output_parent, "the model directory", "--output-dir")
    check_room(output_parent, weight_bytes + (NGRAM_FILE_BYTES if cfg.ngram_blend else 0), "the model directory",
               "--output-dir")


def _load_data(cfg: TrainConfig, context: Optional[DistributedContext], resume: Optional[Dict[str, Any]],
               splits: Optional[Tuple[ReviewData, ReviewData, ReviewData]] = None):
    """The three loaders and the preprocessor (a resumed run's comes from its checkpoint); ``splits``
    are the reviews when they have been read already."""
    preprocessor = TextPreprocessor.from_dict(resume["preprocessor"]) if resume else None
    encoding = {} if resume else {"max_length": cfg.max_length, "truncation": cfg.truncation,
                                  "tokenizer": cfg.tokenizer, "eval_max_length": cfg.eval_max_length}
    return create_data_loaders(
        DataSource.from_config(cfg), batch_size=cfg.batch_size, max_vocab_size=cfg.max_vocab_size,
        validation_split=cfg.validation_split, seed=cfg.seed, num_workers=cfg.num_workers, min_freq=cfg.min_freq,
        max_train_samples=cfg.max_train_samples, max_test_samples=cfg.max_test_samples,
        preprocessor=preprocessor, pin_memory=cfg.device.startswith("cuda") and torch.cuda.is_available(),
        num_replicas=context.world_size if context else 1, rank=context.rank if context else 0, splits=splits,
        **encoding)


def _teacher_targets(cfg: TrainConfig, train: ReviewDataset) -> np.ndarray:
    """The soft targets of ``--ngram-teacher`` [reviews]: the labels mixed with the out-of-fold
    probabilities of an n-gram model (the same on every process and on resume: the folds follow the seed)."""
    if len(train.class_names) != 2:
        raise DataError(f"--ngram-teacher distils a two-class n-gram model, but the data have "
                        f"{len(train.class_names)} classes; leave it out")
    started = time.perf_counter()
    log_odds = out_of_fold_log_odds(train.texts, train.labels, TEACHER_FOLDS, cfg.seed, cfg.tokenizer)
    agreement = float(np.mean((log_odds > 0) == (train.labels == 1)))
    logger.info("n-gram teacher: %.2f%% of the %d training reviews right out of fold, %.0f s; targets "
                "%.2f x label + %.2f x its probability", 100 * agreement, len(train.labels),
                time.perf_counter() - started, 1 - cfg.ngram_teacher, cfg.ngram_teacher)
    return (1 - cfg.ngram_teacher) * train.labels + cfg.ngram_teacher * logistic(log_odds)


def _time_budget(cfg: TrainConfig, started: float, resume: Optional[Dict[str, Any]]) -> TimeBudget:
    """The run's clock until training starts (the trainer then keeps it): from ``started``, or from the time
    an interrupted pretraining's checkpoint had spent (saves from before it was recorded: from ``started``)."""
    budget = TimeBudget(cfg.max_minutes, started)
    if resume is not None and "pretraining" in resume and "time_budget" in resume:
        try:
            budget.load_state_dict(resume["time_budget"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {resume['path']} holds no usable time spent ({err}); delete it "
                                  "to pretrain again from the start") from None
    return budget


def _prepare_model(cfg: TrainConfig, context: Optional[DistributedContext], resume: Optional[Dict[str, Any]],
                   preprocessor: TextPreprocessor, train_loader, main_process: bool, run_config: Dict[str, Any],
                   corpus: _UnlabeledCorpus, budget: TimeBudget) -> Tuple[LSTMClassifier, Dict[str, Any]]:
    """The model to train: new (with GloVe and language-model pretraining on ``corpus`` as asked), one whose
    pretraining was interrupted (continued), or as an epoch checkpoint describes it (its weights are
    loaded by the trainer). Returns it and the statistics of its set-up."""
    model = LSTMClassifier.from_config(resume["model_config"] if resume else LSTMConfig.from_settings(
        cfg, preprocessor.vocab_size, train_loader.dataset.class_names))
    model.sequence_path = cfg.sequence_path
    pretraining = resume.get("pretraining") if resume else None
    extra: Dict[str, Any] = dict(resume.get("setup") or {}) if pretraining else {}
    if cfg.use_glove and resume is None:
        extra["glove"] = _initialize_glove(cfg, model, preprocessor, main_process)
    if pretraining is not None:
        model.load_state_dict(resume["model_state"])
    model.embedding.weight.requires_grad_(not cfg.freeze_embeddings)  # also on resume: the same optimiser
    if cfg.pretrain_lm_epochs and (resume is None or pretraining is not None):
        checkpoint = _PretrainingCheckpoint(Path(cfg.checkpoint_dir) / PRETRAINING_CHECKPOINT, model, preprocessor,
                                            run_config, extra, main_process, budget)
        stats = _pretrain_language_model(cfg, model, corpus, resolve_device(context.device if context else cfg.device),
                                         checkpoint, pretraining)
        if stats is not None:
            extra["lm_pretraining"] = stats
    return model, extra


class _PretrainingCheckpoint:
    """Writes ``checkpoint_pretraining.pt`` (rank 0): what a resumed run needs to continue pretraining."""

    def __init__(self, path: Path, model: LSTMClassifier, preprocessor: TextPreprocessor,
                 run_config: Dict[str, Any], setup: Dict[str, Any], main_process: bool, budget: TimeBudget):
        self.path, self.model, self.preprocessor = path, model, preprocessor
        self.run_config, self.setup, self.main_process = run_config, setup, main_process
        self.budget = budget  # the run's clock: pretraining stops by it, a resumed run counts on from its time

    def __call__(self, pretraining: Dict[str, Any]) -> None:
        if not self.main_process:
            return
        state = {"epoch": 0, "model_config": asdict(self.model.config), "model_state": self.model.state_dict(),
                 "preprocessor": self.preprocessor.to_dict(), "run_config": self.run_config,
                 "setup": self.setup, "pretraining": pretraining, "time_budget": self.budget.state_dict()}
        try:
            save_state(self.path, state)
        except (OSError, RuntimeError) as err:  # torch reports a short write as RuntimeError
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrainingError(f"could not write {self.path} ({reason}); free some space or choose another "
                                "--checkpoint-dir") from None


def _initialize_glove(cfg: TrainConfig, model: LSTMClassifier, preprocessor: TextPreprocessor,
                      main_process: bool) -> Dict[str, Any]:
    """GloVe vectors into the embedding; under torchrun rank 0 downloads first, the others then read the cache."""
    if not main_process:
        barrier()
    stats = initialize_model_with_glove(model, preprocessor, cfg.glove_corpus, cfg.glove_dim,
                                        freeze_embeddings=cfg.freeze_embeddings, cache_dir=cfg.glove_cache_dir,
                                        progress=not cfg.quiet and main_process)
    if main_process:
        barrier()
    return stats


def _pretrain_language_model(cfg: TrainConfig, model: LSTMClassifier, unlabeled: _UnlabeledCorpus,
                             device: torch.device, checkpoint: _PretrainingCheckpoint,
                             saved: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """Pretrain on the unlabeled texts plus the training reviews (continuing ``saved``); None when they are
    too short to. A SIGINT/SIGTERM saves ``checkpoint`` and raises TrainingInterrupted, as during training;
    running out of the run's time (``--max-minutes``, the checkpoint's clock) saves it and raises
    TimeLimitReached.

    Under torchrun every process does the same, and they stop after the same step (``_PretrainingStop``);
    DistributedDataParallel then starts all of them from rank 0's weights."""
    budget = checkpoint.budget
    if saved is not None and saved["step"] < saved["total_steps"] and _PretrainingStop.out_of_time(budget, device):
        raise _out_of_time(budget, checkpoint.path, saved["step"], saved["total_steps"])  # resumed, no time left
    corpus = unlabeled.reviews()
    settings = PretrainConfig(epochs=cfg.pretrain_lm_epochs, seed=cfg.seed)
    words = sum(len(ids) for ids in corpus)
    if words <= settings.window:
        logger.warning("only %d words to pretrain on, fewer than one window of %d; skipping language-model "
                       "pretraining (--pretrain-lm-epochs 0 silences this)", words, settings.window + 1)
        return None
    logger.info("language-model pretraining: %d reviews, %.1f pass(es)%s", len(corpus), cfg.pretrain_lm_epochs,
                f", continuing after step {saved['step']}" if saved else "")
    model.to(device)
    with StopSignals() as signals:
        stop = _PretrainingStop(signals, budget, device)
        stats = pretrain_language_model(model, corpus, settings, device, state=saved, save=checkpoint,
                                        should_stop=stop)
        if not stats["stopped"]:
            stop()  # once more, for a signal that came during the final save
    if stop.signal is not None:  # also one that came with the last step: the run stops, its checkpoint complete
        raise interrupted(stop.signal, f"during language-model pretraining (step {stats['steps']})",
                          checkpoint.path)
    if stats["stopped"]:  # by the time limit, with steps left
        raise _out_of_time(budget, checkpoint.path, stats["steps"], stats["total_steps"])
    logger.info("language-model pretraining: %d steps in %.0f s, loss %.3f -> %.3f", stats["steps"],
                stats["seconds"], stats["first_loss"], stats["last_loss"])
    return {**stats, "unlabeled_reviews": unlabeled.unlabeled_count, "training_reviews": len(unlabeled.train_ids)}


class _PretrainingStop:
    """Asked after each pretraining step whether to stop there, and agreed over the ranks under torchrun, so
    that all stop after the same step: when any received a stop signal (that signal, ``signal``) or found
    the time limit reached on its own clock."""

    TIME_LIMIT = 1  # below every signal's number, so that a signal wins the agreement

    def __init__(self, signals: StopSignals, budget: TimeBudget, device: torch.device):
        self.signals, self.budget, self.device = signals, budget, device
        self.signal: Optional[int] = None

    def __call__(self) -> bool:
        local = self.signals.requested or (0 if self.budget.allows(0) else self.TIME_LIMIT)
        agreed = max_over_ranks(local, self.device)
        if agreed > self.TIME_LIMIT:
            self.signal = agreed
        return agreed != 0

    @staticmethod
    def out_of_time(budget: TimeBudget, device: torch.device) -> bool:
        """Whether any rank's clock has reached the limit (before a step, where no signal is awaited)."""
        return any_rank(not budget.allows(0), device)


def _out_of_time(budget: TimeBudget, path: Path, step: int, total_steps: int) -> TimeLimitReached:
    """The error that ends a run whose time ran out in pretraining, saying how to go on from ``path``."""
    return TimeLimitReached(
        f"the time limit of {budget.seconds / 60:g} minutes (--max-minutes) ran out during language-model "
        f"pretraining, at step {step} of {total_steps}, before the first epoch; {path} holds its progress: "
        "continue with --resume auto and a larger --max-minutes (or none), or start again in another "
        "--checkpoint-dir with fewer --pretrain-lm-epochs")


def _unlabeled_texts(cfg: TrainConfig) -> List[str]:
    """``--unlabeled``'s texts, else IMDB's train/unsup (none for your own data without --unlabeled)."""
    if cfg.unlabeled:
        return read_texts(cfg.unlabeled, cfg.text_column)
    if DataSource.from_config(cfg).own_files() is not None:
        logger.info("no --unlabeled texts: the unlabeled reviews are the training texts alone")
        return []
    unlabeled = load_unlabeled_reviews(cfg.data_dir)
    if not unlabeled:
        logger.warning("%s has no train/unsup reviews; the unlabeled reviews are the training reviews alone",
                       cfg.data_dir)
    return unlabeled


def _tensorboard_wanted(cfg: TrainConfig) -> bool:
    installed = importlib.util.find_spec("tensorboard") is not None
    if cfg.tensorboard and not installed:
        logger.warning("--tensorboard needs the tensorboard package (pip install tensorboard); logging without it")
    return installed if cfg.tensorboard is None else bool(cfg.tensorboard and installed)


def _train(trainer: Trainer, cfg: TrainConfig, resume: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    if resume is None:
        return trainer.train(cfg.epochs, early_stopping_patience=cfg.early_stopping_patience,
                             save_every=cfg.save_every)
    trainer.load_state_dict(resume)
    remaining = cfg.epochs - trainer.epoch
    logger.info("resuming from %s after epoch %d; %d epoch(s) to go", resume["path"], trainer.epoch, max(remaining, 0))
    if remaining < 1:
        return trainer.history
    return trainer.train(remaining, early_stopping_patience=cfg.early_stopping_patience, save_every=cfg.save_every)


def _finish(trainer: Trainer, cfg: TrainConfig, loaders, preprocessor: TextPreprocessor, history,
            extra: Dict[str, Any]) -> Dict[str, Any]:
    train, val, test = (loader.dataset for loader in loaders)
    device = next(trainer.model.parameters()).device
    # the arithmetic predict and evaluate use by default, so the test metrics saved are the ones they give
    lstm = SentimentPredictor(trainer.model, preprocessor, device=device, dtype=prediction_dtype("auto", device))
    scored = _final_scores(lstm, train, val, test, cfg.ngram_blend)
    calibrated = _calibrate(val, scored["validation"], test, scored["test"])
    test_metrics = _score_metrics(test, scored["test"] / calibrated["temperature"])
    logger.info("test: loss %.4f, accuracy %.2f%% on %d reviews (weights of %s); temperature %.3f, "
                "calibration error %.4f", test_metrics["loss"], 100 * test_metrics["accuracy"],
                test_metrics["n_examples"], describe_final_weights(extra["final_weights"]), calibrated["temperature"],
                test_metrics["ece"])
    metrics = {"test": test_metrics, "best_epoch": history["best_epoch"], "history": history,
               "summary": trainer.get_training_summary(), "calibration": calibrated, "speed": scored["speed"],
               **extra}
    if scored["ngram_blend"] is not None:
        metrics.update(test_lstm_only=_score_metrics(test, scored["test_lstm"]), ngram_blend=scored["stats"])
    card = model_card(cfg, metrics, (train, val, test), trainer.model, preprocessor)
    save_model_directory(cfg.output_dir, trainer.model, preprocessor, asdict(cfg), metrics, scored["ngram_blend"],
                         calibration={key: calibrated[key] for key in CALIBRATION_KEYS}, card=card)
    _export_onnx(cfg.output_dir)
    atomic_write_json(Path(cfg.checkpoint_dir) / "metrics.json", metrics)
    if history["train_losses"]:
        plot_training_curves(history, Path(cfg.checkpoint_dir) / "training_curves.png")
    logger.info("model directory written to %s", cfg.output_dir)
    return metrics


def _final_scores(lstm: SentimentPredictor, train: ReviewDataset, val: ReviewDataset, test: ReviewDataset,
                  blend: bool) -> Dict[str, Any]:
    """The finished model's final scores of the validation and test reviews (blended with an n-gram model when
    ``blend`` and one can be fitted), the LSTM's own test scores, the blend and its statistics, and the speed
    of scoring the test reviews (``speed``)."""
    val_lstm = lstm.lstm_scores(val.texts)
    started = time.perf_counter()
    test_lstm = lstm.lstm_scores(test.texts)
    seconds = time.perf_counter() - started
    result = {"validation": val_lstm, "test": test_lstm, "test_lstm": test_lstm, "ngram_blend": None}
    fitted = _fit_ngram_blend(lstm.preprocessor.tokenizer, train, val, val_lstm) if blend else None
    if fitted is not None:
        ngram_blend, val_ngram, fit_seconds = fitted
        started = time.perf_counter()
        test_ngram = ngram_blend.model.log_odds(test.texts)
        seconds += time.perf_counter() - started
        test_blend = ngram_blend.blend.apply(test_lstm, test_ngram)
        result.update(validation=ngram_blend.blend.apply(val_lstm, val_ngram), test=test_blend,
                      ngram_blend=ngram_blend, stats=_blend_stats(ngram_blend, test, test_blend, test_ngram, fit_seconds))
    result["speed"] = {"device": device_name(lstm.device), "runtime": lstm.runtime, "reviews": len(test.texts),
                       "reviews_per_second": len(test.texts) / max(seconds, 1e-9)}
    return result


def _fit_ngram_blend(tokenizer: str, train: ReviewDataset, val: ReviewDataset, val_lstm: np.ndarray
                     ) -> Optional[Tuple[NgramBlend, np.ndarray, float]]:
    """The blend of the LSTM with an n-gram model, with that model's validation scores and the seconds it
    took; None, with a warning, if it cannot be fitted.

    The blend's weights are fitted on the validation reviews, scored by an n-gram model of the training
    reviews (which never saw them); the n-gram model kept is then refitted on both, with the same settings,
    as the LSTM's best epoch was chosen with the validation reviews too (on the bfloat16 recommended model
    of bench/README.md: n-grams alone 91.49% -> 91.70%, blend 92.66% -> 92.80%). The validation scores
    returned, which calibration reads, stay those of the first n-gram model."""
    started = time.perf_counter()
    classes = len(train.class_names)
    try:
        ngram_model = NgramModel.fit(train.texts, train.labels, tokenizer=tokenizer, classes=classes)
    except DataError as err:
        logger.warning("no n-gram blend: %s; the model is the LSTM alone", err)
        return None
    val_ngram = ngram_model.log_odds(val.texts)
    blend = Blend.fit(val_lstm, val_ngram, val.labels)
    refitted = NgramModel.fit(train.texts + val.texts, np.concatenate([train.labels, val.labels]),
                              tokenizer=tokenizer, classes=classes)
    return NgramBlend(refitted, blend), val_ngram, time.perf_counter() - started


def _blend_stats(ngram_blend: NgramBlend, test: ReviewDataset, test_blend: np.ndarray, test_ngram: np.ndarray,
                 seconds: float) -> Dict[str, Any]:
    blend, accuracy = ngram_blend.blend, _score_metrics(test, test_blend)["accuracy"]
    ngram_accuracy = _score_metrics(test, test_ngram)["accuracy"]
    logger.info("n-gram blend: %d n-grams, weights %.2f (LSTM) and %.2f (n-grams); test accuracy %.2f%% "
                "(n-grams alone %.2f%%), %.0f s", len(ngram_blend.model.keys), blend.lstm_weight, blend.ngram_weight,
                100 * accuracy, 100 * ngram_accuracy, seconds)
    return {"ngrams": len(ngram_blend.model.keys), **asdict(blend), "ngram_only_test_accuracy": ngram_accuracy,
            "seconds": seconds}


def _calibrate(val: ReviewDataset, val_scores: np.ndarray, test: ReviewDataset, test_scores: np.ndarray
               ) -> Dict[str, Any]:
    """The temperature that calibrates the final scores, fitted on the validation reviews, and the expected
    calibration error before and after it on both splits."""
    temperature = fit_temperature(val.labels, val_scores)
    if not TEMPERATURE_RANGE[0] * 1.01 < temperature < TEMPERATURE_RANGE[1] / 1.01:
        logger.info("the calibration temperature stopped at its bound, %.2f (it may be %g to %g): the model's "
                    "validation scores are far from calibrated, as after too little training", temperature,
                    *TEMPERATURE_RANGE)

    def ece(data: ReviewDataset, scores: np.ndarray) -> float:
        return calibration(data.labels, probabilities_of(scores))["ece"]

    return {"temperature": temperature, "fitted_on": "validation", "validation_reviews": len(val.labels),
            "validation_ece_before": ece(val, val_scores), "validation_ece_after": ece(val, val_scores / temperature),
            "test_ece_before": ece(test, test_scores), "test_ece_after": ece(test, test_scores / temperature)}


def _export_onnx(output_dir: str) -> None:
    """``model.onnx`` (and ``model.int8.onnx``) beside the model, for faster prediction on a CPU; skipped
    without the onnx package."""
    if importlib.util.find_spec("onnx") is None:
        logger.info("no model.onnx written: the onnx package is not installed (pip install onnx onnxruntime)")
        return
    try:
        export_onnx(output_dir)
    except Exception as err:  # the exporter raises many types; the saved model is complete without it
        logger.warning("could not export model.onnx (%s); predictions will run with PyTorch",
                       str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def _score_metrics(data: ReviewDataset, scores: np.ndarray) -> Dict[str, Any]:
    """The metrics of scores: log-odds [N] of two classes, or logits [N, C] (for the n-gram model: each
    class's log-odds against the rest, which a softmax ranks the same way)."""
    probabilities = probabilities_of(scores)
    return {**metrics_for(data.labels, probabilities, data.class_names),
            "ece": calibration(data.labels, probabilities)["ece"]}

"""MODEL_CARD.md: what a trained model is, what it was trained and tested on, how well it does, and where
it should not be trusted, in the sections people know from model hubs. Training writes it into the model
directory; ``serve`` shows it on ``/metadata`` and the web page.

Every number comes from the run's own metrics (``metrics.json``); file names are given without their
folders, so a card can be shared without the paths of the machine that trained it.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Optional, Sequence

from src.config import TrainConfig, parse_glove_dim
from src.data.datasets import ReviewDataset
from src.data.loaders import DataSource
from src.data.preprocessing import TextPreprocessor
from src.models.lstm_model import LSTMClassifier
from src.training.averaging import describe_final_weights

_SCORES = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("roc_auc", "ROC-AUC"), ("loss", "log loss"),
           ("ece", "calibration error (ECE)"))
_TRUNCATION = {"head": "its start", "head_tail": "its first quarter and its end"}


def model_card(cfg: TrainConfig, metrics: Dict[str, Any], splits: Sequence[ReviewDataset],
               model: LSTMClassifier, preprocessor: TextPreprocessor) -> str:
    """The card's Markdown for a finished run: ``metrics`` as ``_finish`` assembles them, ``splits`` the
    training, validation and test reviews, ``preprocessor`` the model's (its lengths and truncation, which
    a run resumed from an older checkpoint keeps from there)."""
    classes = list(model.config.classes)
    sections = [
        f"# Model card: {' / '.join(classes)} text classifier (bidirectional LSTM)",
        f"Trained with lstm-sentiment on {datetime.date.today().isoformat()}. Use it with "
        "`lstm-sentiment predict --model-dir DIR \"some text\"`, `evaluate`, or `serve`.",
        "## Model\n" + _bullets(_model_lines(cfg, metrics, model)),
        "## Data\n" + _bullets(_data_lines(cfg, splits, classes, preprocessor)),
        "## Training\n" + _bullets(_training_lines(cfg, metrics)),
        "## Evaluation\n" + _evaluation(metrics, len(splits[2].labels)),
        "## Calibration\n" + _calibration(metrics["calibration"]),
        "## Speed\n" + _speed(metrics["speed"]),
        "## Intended use and limits\n" + _bullets(_limits(cfg, preprocessor)),
    ]
    return "\n\n".join(sections) + "\n"


def _bullets(lines: List[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _model_lines(cfg: TrainConfig, metrics: Dict[str, Any], model: LSTMClassifier) -> List[str]:
    config = model.config
    glove = metrics.get("glove")  # absent after a resume: the run that loaded the vectors recorded them
    coverage = f" ({100 * glove['coverage']:.1f}% of the vocabulary found)" if glove else ""
    learned = config.embedding_dim - parse_glove_dim(cfg.glove_dim) if cfg.use_glove else 0
    embedding = (f"GloVe {cfg.glove_corpus} {cfg.glove_dim} vectors{coverage}, "
                 f"{'frozen' if cfg.freeze_embeddings else 'fine-tuned'}"
                 f"{f', and {learned} more dimensions learned from scratch' if learned else ''}"
                 if cfg.use_glove else "learned from scratch")
    pretraining = "none" if not cfg.pretrain_lm_epochs else f"{cfg.pretrain_lm_epochs} epoch(s)" + (
        "" if metrics.get("lm_pretraining") else " asked for; this run's metrics do not record it (resumed, or skipped)")
    blend = metrics.get("ngram_blend")
    return [
        f"{config.n_layers} layer(s) of {'bidirectional ' if config.bidirectional else ''}LSTM with "
        f"{config.hidden_dim} units{', one stack per direction' if config.stacking == 'per_direction' else ''}, "
        f"{config.pooling} pooling, dropout {config.dropout}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters",
        f"word embeddings of {config.embedding_dim} dimensions: {embedding}",
        f"language-model pretraining: {pretraining}",
        f"adversarial training on the embeddings: eps {cfg.adversarial_eps}" if cfg.adversarial_eps
        else "adversarial training: none",
        f"virtual adversarial training on unlabeled reviews: eps {cfg.vat_eps}" if cfg.vat_eps
        else "virtual adversarial training: none",
        f"trained toward the labels mixed with an n-gram model's out-of-fold probabilities: weight "
        f"{cfg.ngram_teacher}" if cfg.ngram_teacher else "n-gram teacher: none",
        f"label smoothing: {cfg.label_smoothing}" if cfg.label_smoothing else "label smoothing: none",
        f"blended with an n-gram model (NBSVM on word 1-3-grams, {blend['ngrams']:,} n-grams); the blend's "
        "weights were fitted on the validation split, then the n-gram model again on training and validation "
        "reviews" if blend else "no n-gram blend: the LSTM alone",
        f"outputs: {', '.join(config.classes)}",
    ]


def _data_lines(cfg: TrainConfig, splits: Sequence[ReviewDataset], classes: List[str],
                preprocessor: TextPreprocessor) -> List[str]:
    train, val, test = splits
    own = DataSource.from_config(cfg).own_files()
    source = ("your own files: " + ", ".join(f"{path.name} ({split})" for split, path in own.items())) if own \
        else "IMDB's Large Movie Review Dataset (aclImdb v1)"
    counts = [sum(1 for label in train.labels if label == c) for c in range(len(classes))]
    share = ", ".join(f"{name} {count:,}" for name, count in zip(classes, counts))
    return [
        f"source: {source}",
        f"reviews: {len(train.labels):,} for training ({share}), {len(val.labels):,} for validation, "
        f"{len(test.labels):,} for testing",
        f"tokenizer {cfg.tokenizer}, vocabulary of {cfg.max_vocab_size:,} words at most (seen at least "
        f"{cfg.min_freq} time(s)), {preprocessor.max_length} tokens per text in training and "
        f"{preprocessor.eval_max_length} in evaluation ({preprocessor.truncation} truncation)",
    ]


def _training_lines(cfg: TrainConfig, metrics: Dict[str, Any]) -> List[str]:
    status = metrics["summary"]["training_status"]
    return [
        f"{status['epochs_completed']} of at most {cfg.epochs} epochs, {_kept_weights(metrics, status['monitor'])}, "
        f"{_how_it_ended(status)}",
        f"{status['total_time'] / 60:.1f} minutes on {metrics['speed']['device']}",
        f"optimizer {cfg.optimizer}, learning rate {cfg.learning_rate}, batch size {cfg.batch_size}, seed {cfg.seed}",
        f"learning-rate schedule: {_schedule(cfg)}",
    ]


def _schedule(cfg: TrainConfig) -> str:
    if cfg.scheduler != "plateau":
        return cfg.scheduler
    restart = ", each time from the best epoch's weights" if cfg.restore_best_on_plateau else ""
    return f"plateau, halved after {cfg.plateau_patience} epochs without a new best{restart}"


def _kept_weights(metrics: Dict[str, Any], monitor: str) -> str:
    final = metrics["final_weights"]
    kept = f"the weights of {describe_final_weights(final)} kept (best {monitor}"
    if len(final["epochs"]) > 1:
        return kept + f" at epoch {metrics['best_epoch']}; the average scored better on validation)"
    return kept + ")"


def _how_it_ended(status: Dict[str, Any]) -> str:
    if status.get("time_limit_reached"):
        return "stopped at the time limit (--max-minutes)"
    return "stopped early" if status["stopped_early"] else "ran to the end"


def _evaluation(metrics: Dict[str, Any], reviews: int) -> str:
    rows = [("the model" + (" (LSTM blended with n-grams)" if "test_lstm_only" in metrics else ""), metrics["test"])]
    if "test_lstm_only" in metrics:
        rows.append(("LSTM alone (no temperature)", metrics["test_lstm_only"]))
    header = "| on the test split | " + " | ".join(name for _, name in _SCORES) + " |"
    lines = [f"On the {reviews:,} test reviews, which training never saw:", "", header,
             "|---" * (len(_SCORES) + 1) + "|"]
    for name, scores in rows:
        lines.append(f"| {name} | " + " | ".join(_shown(key, scores.get(key)) for key, _ in _SCORES) + " |")
    return "\n".join(lines)


def _shown(key: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if key in ("accuracy", "macro_f1") else f"{value:.4f}"


def _calibration(calibration: Dict[str, Any]) -> str:
    return (f"The final scores are divided by a temperature of {calibration['temperature']:.3f}, fitted on the "
            f"{calibration['validation_reviews']:,} validation reviews, so that a probability of 0.8 is right "
            "about 80% of the time. Expected calibration error (15 bins): validation "
            f"{calibration['validation_ece_before']:.4f} before and {calibration['validation_ece_after']:.4f} after; "
            f"test {calibration['test_ece_before']:.4f} before and {calibration['test_ece_after']:.4f} after. "
            "Labels do not change.")


def _speed(speed: Dict[str, Any]) -> str:
    return (f"{speed['reviews_per_second']:,.0f} reviews per second, measured while scoring the "
            f"{speed['reviews']:,} test reviews at the end of training on {speed['device']} ({speed['runtime']}, "
            "batches of similar length). Single texts and other machines differ; `bench/predict.py` measures "
            "a model directory.")


def _limits(cfg: TrainConfig, preprocessor: TextPreprocessor) -> List[str]:
    imdb = DataSource.from_config(cfg).own_files() is None
    domain = "English movie reviews (IMDB)" if imdb else "texts like its training files"
    return [
        f"made for {domain}; other domains, languages and styles (tweets, product reviews, other languages) "
        "were not tested and will be less accurate",
        f"the LSTM reads {preprocessor.eval_max_length} tokens of a text "
        f"({_TRUNCATION[preprocessor.truncation]}); the rest of a longer "
        "text does not reach it" + (" (the n-gram model reads all of it)" if cfg.ngram_blend else ""),
        "sarcasm, mixed opinions and negation over long spans are the usual errors of such models",
        "the probabilities are calibrated on the validation split: they hold for texts like it",
        "not for decisions about people: the labels are opinions of the training data's authors",
    ]

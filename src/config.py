"""Every setting of a training run, defined once.

``TrainConfig`` holds each setting with its default, its help text, its type and
the values it may take (field metadata). The command line of ``train_model.py`` is
generated from it, a ``--config`` file is checked against it, and the Python API
(``create_data_loaders``, ``LSTMClassifier``, ``create_trainer``, ...) takes its
defaults from it and checks its arguments with ``check_setting``, so a default
or a rule never differs between two entry points.

This module imports nothing else of the project: every layer may read it.
"""

from __future__ import annotations

import math
import reprlib
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Tuple

TRUNCATION_STRATEGIES = ("head", "head_tail")
POOLING_MODES = ("max_mean", "max", "mean", "last")
TOKENIZER_NAMES = ("unicode", "social", "words")
CLASS_WEIGHTINGS = ("none", "balanced")
SEQUENCE_PATHS = ("padded", "packed")
STACKINGS = ("joint", "per_direction")
PRECISIONS = ("auto", "float32", "bfloat16")
# temperatures that training may fit and a model directory may hold; outside them a file is damaged or hostile
TEMPERATURE_RANGE = (0.05, 20.0)
MAX_TOKENS_PER_REVIEW = 100_000  # a bound on --max-length, so a model file cannot make one review cost gigabytes
MAX_LAYERS = 32  # a bound on --n-layers: deeper LSTMs do not train, and 10**6 layers took minutes and GBs to build
SCHEDULER_TYPES = ("plateau", "step", "cosine", "slanted_triangular", "none")
OPTIMIZER_TYPES = ("adam", "adamw")
MONITORS = ("val_loss", "val_accuracy")
GLOVE_VARIANTS: Dict[str, Dict[str, object]] = {
    "6B": {"archive": "glove.6B.zip", "dimensions": ("50d", "100d", "200d", "300d")},
    "42B": {"archive": "glove.42B.300d.zip", "dimensions": ("300d",)},
    "840B": {"archive": "glove.840B.300d.zip", "dimensions": ("300d",)},
}
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# What a resumed run may change: "allow" (how and where it runs), "refuse" (what it
# learns from and how; changing it would silently train another model; left out, the
# checkpoint's value is taken), or "adopt" (where the data are: left out, the checkpoint's
# value is taken; given, it may differ, since the data's fingerprint is checked).
ALLOW, REFUSE, ADOPT = "allow", "refuse", "adopt"
# Settings whose default (None) a run resolves when it starts, from the machine it runs on, and saves
# resolved; a resume that leaves one at None takes the checkpoint's value.
RESOLVED_AT_START = ("adversarial_eps",)
# The value of a setting in checkpoints written before the setting existed.
LEGACY_VALUES = {"tokenizer": "words", "class_weights": "none", "text_column": "text", "label_column": "label",
                 "positive_label": None, "unlabeled": None, "stacking": "joint", "layer_lr_decay": 1.0,
                 "gradual_unfreezing": False, "ngram_teacher": 0.0}


def setting(default: Any, help: str, group: str, *, minimum: Optional[float] = None,
            above: Optional[float] = None, below: Optional[float] = None, maximum: Optional[float] = None,
            choices: Optional[Tuple[str, ...]] = None, resume: str = REFUSE, takes_value: bool = False) -> Any:
    """A ``TrainConfig`` field with its rule in the metadata.

    ``minimum``/``maximum`` are inclusive, ``above``/``below`` exclusive. A boolean becomes a pair
    of flags (``--x`` / ``--no-x``) unless ``takes_value`` (``--x true``)."""
    rule = dict(help=help, group=group, minimum=minimum, above=above, below=below, maximum=maximum, choices=choices,
                resume=resume, takes_value=takes_value)
    return field(default=default, metadata=rule)


@dataclass
class TrainConfig:
    """Every setting of a training run (the command line's flags, with underscores)."""

    # data
    data_dir: str = setting("data/imdb", "folder with aclImdb/ or aclImdb_v1.tar.gz (downloaded there if the folder is "
                            "missing or empty), or with your own train and test files (.csv, .tsv, .jsonl or "
                            ".parquet) and optionally a validation, valid or dev file", "data", resume=ADOPT)
    train_file: Optional[str] = setting(None, "your own training data (.csv, .tsv, .jsonl or .parquet); overrides "
                                        "--data-dir's", "data", resume=ADOPT)
    validation_file: Optional[str] = setting(None, "your own validation data, used instead of holding out "
                                             "--validation-split of the training data", "data", resume=ADOPT)
    test_file: Optional[str] = setting(None, "your own test data", "data", resume=ADOPT)
    text_column: str = setting("text", "column (or JSON field) of the texts in your own files", "data")
    label_column: str = setting("label", "column (or JSON field) of the labels: names or integers, two or more "
                                "classes", "data")
    positive_label: Optional[str] = setting(None, "the positive class of two, when it is not named 1, pos or "
                                            "positive", "data")
    unlabeled: Optional[str] = setting(None, "texts without labels for language-model pretraining and --vat-eps "
                                       "(one per line, or a table's --text-column); IMDB's train/unsup is used "
                                       "without it", "data")
    class_weights: str = setting("none", "balanced weighs each class's loss by the inverse of its share of the "
                                 "training data (for imbalanced classes)", "data", choices=CLASS_WEIGHTINGS)
    tokenizer: str = setting("unicode", "social: words, ! and ?, emoticons, emoji, #hashtags and @mentions; "
                             "unicode: social for any script (NFC-normalised, words with their combining marks, "
                             "a token per character of Chinese, Japanese, Thai, Lao, Khmer and Myanmar); words: "
                             "words, ! and ? only", "data", choices=TOKENIZER_NAMES)
    max_vocab_size: int = setting(25000, "vocabulary size, <pad> and <unk> included", "data", minimum=3)
    min_freq: int = setting(1, "leave out words seen fewer times in the training reviews", "data", minimum=1)
    max_length: int = setting(400, "tokens kept per review", "data", minimum=1, maximum=MAX_TOKENS_PER_REVIEW)
    truncation: str = setting("head_tail", "keep the start (head), or the first quarter and the end (head_tail), "
                              "of a review longer than --max-length", "data", choices=TRUNCATION_STRATEGIES)
    eval_max_length: Optional[int] = setting(None, "tokens read per review when validating, testing and predicting "
                                             "(default: twice --max-length): a model trained on cut reviews "
                                             "classifies longer ones better", "data", minimum=1,
                                             maximum=MAX_TOKENS_PER_REVIEW)
    validation_split: float = setting(0.2, "share of the training reviews held out for validation", "data",
                                      above=0, below=1)
    max_train_samples: Optional[int] = setting(None, "use only N training reviews (quick runs); validation comes out "
                                               "of these", "data", minimum=1)
    max_test_samples: Optional[int] = setting(None, "evaluate on only N test reviews", "data", minimum=1)
    num_workers: int = setting(0, "DataLoader worker processes", "data", minimum=0, resume=ALLOW)
    # model
    embedding_dim: int = setting(300, "size of the word vectors", "model", minimum=1)
    hidden_dim: int = setting(128, "LSTM units per direction", "model", minimum=1)
    n_layers: int = setting(2, "stacked LSTM layers", "model", minimum=1, maximum=MAX_LAYERS)
    dropout: float = setting(0.3, "dropout between layers and before the classifier", "model", minimum=0, below=1)
    embedding_dropout: float = setting(0.3, "dropout on the word vectors", "model", minimum=0, below=1)
    weight_drop: float = setting(0.0, "DropConnect on the LSTM's hidden-to-hidden weights while the classifier "
                                 "trains (AWD-LSTM, ULMFiT): each batch drops this share of them, the same at every "
                                 "time step; 0 turns it off", "model", minimum=0, below=1)
    bidirectional: bool = setting(True, "read each review in both directions (true or false)", "model",
                                  takes_value=True)
    pooling: str = setting("max_mean", "how the LSTM states become one vector", "model", choices=POOLING_MODES)
    stacking: str = setting("joint", "joint: each layer above the first reads both directions; per_direction: each "
                            "direction is its own stack of --n-layers, joined only before pooling (as in ELMo), so "
                            "language-model pretraining trains every layer, not only the first", "model",
                            choices=STACKINGS)
    sequence_path: str = setting("padded", "padded per-direction LSTMs, or packed (cuDNN) LSTM calls (one, or one "
                                 "per direction's stack): the same function; padded was faster on CPU and GPU (joint "
                                 "stacks)", "model", choices=SEQUENCE_PATHS,
                                 resume=ALLOW)
    use_glove: bool = setting(False, "initialise the embedding with GloVe vectors", "model")
    glove_corpus: str = setting("6B", "GloVe corpus", "model", choices=tuple(GLOVE_VARIANTS))
    glove_dim: str = setting("300d", "GloVe vector size (50d, 100d, 200d or 300d); sets --embedding-dim unless "
                             "that is given; a larger --embedding-dim adds dimensions learned from scratch after "
                             "the GloVe ones", "model")
    glove_cache_dir: str = setting("data/glove", "where GloVe files are kept", "model", resume=ALLOW)
    freeze_embeddings: bool = setting(False, "do not train the embedding", "model")
    pretrain_lm_epochs: float = setting(1.0, "first pretrain the embedding and the first LSTM layer (every layer "
                                        "with --stacking per_direction or one direction) as language models on "
                                        "train/unsup plus the training reviews, for this many passes; 0 turns it off",
                                        "model", minimum=0)
    ngram_blend: bool = setting(False, "after training, fit a logistic regression on word 1-3-grams and blend its "
                                "prediction with the LSTM's, weighted on the validation split", "model")
    # training
    epochs: int = setting(20, "maximum number of epochs (the total, also when resuming)", "training", minimum=1,
                          resume=ALLOW)
    batch_size: int = setting(64, "reviews per batch", "training", minimum=1)
    learning_rate: float = setting(0.001, "peak learning rate of the optimizer", "training", above=0)
    weight_decay: float = setting(1e-5, "L2 penalty of the optimizer", "training", minimum=0)
    optimizer: str = setting("adam", "optimizer", "training", choices=OPTIMIZER_TYPES)
    scheduler: str = setting("plateau", "learning-rate schedule: plateau halves it after --plateau-patience "
                             "epochs in a row without a new best; cosine lowers it towards zero over --epochs, or "
                             "over the epochs that --max-minutes leaves time for; slanted_triangular (ULMFiT) sets "
                             "it every step, up from 1/32 of it over the first tenth of --epochs' steps, then down "
                             "again", "training",
                             choices=SCHEDULER_TYPES)
    plateau_patience: int = setting(3, "epochs in a row without a new best after which the plateau schedule "
                                    "halves the learning rate", "training", minimum=1)
    restore_best_on_plateau: bool = setting(False, "when the plateau schedule halves the learning rate, the next "
                                            "epoch starts from the best epoch's weights (which early stopping "
                                            "keeps) instead of the last epoch's", "training")
    layer_lr_decay: float = setting(1.0, "discriminative fine-tuning (ULMFiT): the classifier learns at "
                                    "--learning-rate, each LSTM layer below it at the rate above divided by this, "
                                    "the embedding slowest; ULMFiT used 2.6; 1 turns it off", "training", minimum=1)
    gradual_unfreezing: bool = setting(False, "ULMFiT's gradual unfreezing: the first epoch trains only the "
                                       "classifier, each later one also the next LSTM layer down, the embedding last",
                                       "training")
    gradient_clip: float = setting(1.0, "largest gradient norm; 0 turns clipping off", "training", minimum=0)
    accumulation_steps: int = setting(1, "batches per optimizer step", "training", minimum=1)
    early_stopping_patience: Optional[int] = setting(5, "stop after this many epochs without improvement",
                                                     "training", minimum=1, resume=ALLOW)
    min_delta: float = setting(0.001, "an epoch improves on the best only by more than this (in the monitored "
                               "metric); used by early stopping, the best checkpoint and the plateau schedule",
                               "training", minimum=0, resume=ALLOW)
    monitor: str = setting("val_loss", "metric that picks the best epoch", "training", choices=MONITORS)
    max_minutes: Optional[float] = setting(None, "time limit of the run: training stops before an epoch that "
                                           "would end after this many minutes from the start (data loading and "
                                           "pretraining count, and pretraining stops at the limit, resumable; the "
                                           "test evaluation and the n-gram fit come after); "
                                           "the model directory gets the best epoch so far (a stop in pretraining "
                                           "leaves none); none lifts a limit that a settings file "
                                           "sets", "training", above=0, resume=ALLOW)
    average_epochs: int = setting(1, "after training, also score on validation the weights of the best epoch "
                                  "averaged with the next one, two, ... (up to N epochs in a row, from the kept epoch "
                                  "checkpoints; stochastic weight averaging), and keep an average that validation "
                                  "prefers by the same rule as the best epoch; 1 keeps the best epoch alone",
                                  "training", minimum=1, resume=ALLOW)
    adversarial_eps: Optional[float] = setting(None, "adversarial training on the word vectors (Miyato et al.): "
                                               "also train on each batch moved this far up the loss gradient, in "
                                               "word-vector norms per review; a step then costs about twice as "
                                               "much; 0 turns it off (default: 1 on a GPU or a CPU that trains in "
                                               "bfloat16, 0 on a CPU in float32)", "training", minimum=0)
    vat_eps: float = setting(0.0, "virtual adversarial training (Miyato et al.): also train each step on a batch "
                             "of unlabeled reviews (train/unsup or --unlabeled, and the training reviews) to "
                             "predict what the model predicts for them now when their word vectors are moved "
                             "this far in the direction that changes the prediction most, in word-vector norms "
                             "per review; a step then costs about two passes more; 0 turns it off", "training",
                             minimum=0)
    ngram_teacher: float = setting(0.0, "knowledge distillation from a word 1-3-gram model (two classes): "
                                   "train toward (1 - w) x the label + w x the probability that an n-gram model "
                                   "fitted on the other four fifths of the training reviews gives the review "
                                   "(five fits before training: about two minutes on IMDB); the LSTM still "
                                   "predicts alone; 0 turns it off", "training", minimum=0, maximum=0.5)
    label_smoothing: float = setting(0.0, "label smoothing: train toward the label moved this share of the way to "
                                     "all classes alike (of two classes 1 - s/2 and s/2); validation and the "
                                     "best epoch still read the plain loss; 0 turns it off", "training", minimum=0,
                                     maximum=0.5)
    precision: str = setting("auto", "arithmetic of training on a CPU: bfloat16 (autocast) or float32; auto picks "
                             "bfloat16 where the CPU has it in hardware (AVX512-BF16 or AMX), else float32. On "
                             "CUDA, --amp decides", "training", choices=PRECISIONS, resume=ALLOW)
    amp: bool = setting(False, "mixed precision on CUDA (ignored with a warning on the CPU)", "training",
                        resume=ALLOW)
    detect_anomaly: bool = setting(False, "find the operation that produced NaN (slow)", "training", resume=ALLOW)
    seed: int = setting(42, "seed of the split, the initial weights and the data order; makes a CPU run "
                        "repeatable", "training", minimum=0, maximum=2**32 - 1)  # NumPy's seeds
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", "training", resume=ALLOW)
    # output
    output_dir: str = setting("models", "model directory written at the end", "output", resume=ALLOW)
    checkpoint_dir: str = setting("checkpoints", "run directory: checkpoints, logs, metrics", "output",
                                  resume=ALLOW)
    save_every: Optional[int] = setting(None, "write an epoch checkpoint every N epochs (default: every epoch)",
                                        "output", minimum=1, resume=ALLOW)
    save_every_steps: Optional[int] = setting(None, "also write checkpoint_mid_epoch.pt every N optimizer steps",
                                              "output", minimum=1, resume=ALLOW)
    max_checkpoints: int = setting(5, "recent epoch checkpoints kept", "output", minimum=1, resume=ALLOW)
    save_best_n: int = setting(3, "best epoch checkpoints kept per metric", "output", minimum=1, resume=ALLOW)
    resume: Optional[str] = setting(None, "checkpoint to continue from, or 'auto' for the one furthest into "
                                    "training in --checkpoint-dir", "output", resume=ALLOW)
    quiet: bool = setting(False, "no progress bars; only warnings on the console", "output", resume=ALLOW)
    tensorboard: Optional[bool] = setting(None, "write TensorBoard scalars to <checkpoint-dir>/tensorboard "
                                          "(default: on if installed)", "output", resume=ALLOW)

    @classmethod
    def field_names(cls):
        return [f.name for f in fields(cls)]

    @classmethod
    def check_names(cls, names, where: str = "") -> None:
        """Refuse names that are not settings; ``where`` says where they came from."""
        unknown = sorted(set(names) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{where + ' has ' if where else ''}unknown settings: {', '.join(unknown)}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "TrainConfig":
        """A checked config from raw values (strings from the command line, values from a file).

        GloVe decides the embedding size unless ``embedding_dim`` is given. The names
        given are kept in ``given``: a resumed run takes the checkpoint's value of the others."""
        values = {name: as_read(name, value) for name, value in settings.items()}
        cls.check_names(values)
        if "embedding_dim" not in values and check_setting("use_glove", values.get("use_glove", cls.use_glove)):
            values["embedding_dim"] = parse_glove_dim(check_setting("glove_dim", values.get("glove_dim", cls.glove_dim)))
        config = cls(**values).validate()
        config.given = frozenset(settings)
        return config

    def validate(self) -> "TrainConfig":
        """Check every setting and the rules between them; ValueError names the first bad one."""
        for item in fields(self):
            setattr(self, item.name, check_setting(item.name, getattr(self, item.name)))
        if self.text_column == self.label_column:
            raise ValueError(f"--text-column and --label-column are both {self.text_column!r}; name two columns")
        if self.restore_best_on_plateau and (self.scheduler != "plateau" or self.early_stopping_patience is None):
            raise ValueError("--restore-best-on-plateau restores, when the plateau schedule lowers the rate, the "
                             "best weights that early stopping keeps: use it with --scheduler plateau and an "
                             "--early-stopping-patience")
        if self.use_glove:
            check_glove_variant(self.glove_corpus, self.glove_dim)
            size = parse_glove_dim(self.glove_dim)
            if self.embedding_dim < size:
                raise ValueError(f"--embedding-dim {self.embedding_dim} is smaller than --glove-dim {self.glove_dim}; "
                                 f"use --embedding-dim {size} or more (or leave it out)")
            if self.freeze_embeddings and self.embedding_dim > size:
                raise ValueError(f"--freeze-embeddings would freeze the {self.embedding_dim - size} dimensions beyond "
                                 f"the GloVe vectors at their random start; use --embedding-dim {size} to freeze them")
        return self

    def settle_resume(self, saved: Mapping[str, Any]) -> Tuple[Dict[str, Tuple[Any, Any]], Dict[str, Any]]:
        """Match this config to the settings of the run it resumes (``saved``).

        Every setting a resumed run may not change (or that says where the data are) and
        that this config was not given explicitly takes the saved value; a setting newer
        than the checkpoint counts as its ``LEGACY_VALUES`` value there, and one of
        ``RESOLVED_AT_START`` left at None takes the saved value as if left out. Returns
        ``({flag: (saved, given)}`` of the ones given differently that a resume must refuse,
        ``{flag: saved}`` of those taken over). A config built directly, not by
        ``from_settings``, counts as given in full; ``saved`` empty (a checkpoint written
        through the Python API) settles nothing."""
        given = getattr(self, "given", None)
        changed, adopted = {}, {}
        if not saved:
            return changed, adopted
        for item in fields(self):
            mode = item.metadata["resume"]
            if mode == ALLOW or (item.name not in saved and item.name not in LEGACY_VALUES):
                continue
            old, new = saved.get(item.name, LEGACY_VALUES.get(item.name)), getattr(self, item.name)
            if old == new:
                continue
            if (given is not None and item.name not in given) or (new is None and item.name in RESOLVED_AT_START):
                setattr(self, item.name, old)
                adopted[flag_name(item.name)] = old
            elif mode == REFUSE:
                changed[flag_name(item.name)] = (old, new)
        return changed, adopted

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


_FIELDS = {item.name: item for item in fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def is_switch(name: str) -> bool:
    """Whether setting ``name`` is an on/off flag pair (``--x`` / ``--no-x``) on the command line."""
    return _kind(name)[0] is bool and not _FIELDS[name].metadata["takes_value"]


def default_of(name: str) -> Any:
    """The default value of the setting ``name``."""
    default = _FIELDS[name].default
    if default is MISSING:
        raise KeyError(name)
    return default


def reading_length(max_length: int, eval_max_length: Optional[int]) -> int:
    """Tokens of a review that validation, testing and prediction read: ``eval_max_length``, by default
    twice the training length (bench/README.md: +0.07-0.18 points for the LSTM alone on IMDB's test split)."""
    return eval_max_length if eval_max_length is not None else min(2 * max_length, MAX_TOKENS_PER_REVIEW)


def check_setting(name: str, value: Any, label: Optional[str] = None) -> Any:
    """``value`` converted to the type of setting ``name`` and checked against its rule.

    Strings are parsed ("3", "0.5", "false"); "none" clears a numeric setting that may be
    unset (``--max-minutes none`` lifts a settings file's time limit); anything else must
    already have the right type. ``label`` names the value in the message (default: the flag)."""
    label = label or flag_name(name)
    kind, optional = _kind(name)
    if optional and kind in (int, float) and isinstance(value, str) and value.strip().lower() == "none":
        return None
    if value is None:
        if optional:
            return None
        raise ValueError(f"{label} needs a value")
    value = _convert(value, kind, label)
    rule = _FIELDS[name].metadata
    choices = rule["choices"]
    if choices is not None and value not in choices:
        raise ValueError(f"{label} must be one of {', '.join(choices)}, got {shown(value)}")
    _check_range(value, rule, label)
    return value


def as_read(name: str, value: Any) -> Any:
    """A raw value as the settings take it: YAML's null for the scheduler is "none" (as the spec's
    ``scheduler_type=None``)."""
    return "none" if name == "scheduler" and value is None else value


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = 60


def shown(value: Any) -> str:
    """A setting's value as a message quotes it: cut short, so that a value built from a settings file's
    aliases (a tree of millions of nodes in a few hundred bytes) is never written out whole."""
    return _SHORT_REPR.repr(value)


def _kind(name: str) -> Tuple[type, bool]:
    if name not in _FIELDS:
        raise KeyError(f"unknown setting {name!r}")
    hint = _TYPES[name]
    arguments = typing.get_args(hint)
    if type(None) in arguments:
        return next(arg for arg in arguments if arg is not type(None)), True
    return hint, False


def _convert(value: Any, kind: type, label: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
            return value.lower() in TRUE_WORDS
        raise ValueError(f"{label} must be true or false, got {shown(value)}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{label} must be text, got {shown(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{label} must be a number, got {shown(value)}")
    if kind is int:
        if isinstance(value, int):
            return value
        try:
            if isinstance(value, str):
                return int(value)
        except ValueError:
            pass
        raise ValueError(f"{label} must be a whole number, got {shown(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{label} must be a number, got {shown(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} must be a finite number, got {shown(value)}")
    return number


def _check_range(value: Any, rule: Mapping[str, Any], label: str) -> None:
    minimum, above, below = rule["minimum"], rule["above"], rule["below"]
    if minimum is not None and below is not None and not minimum <= value < below:
        raise ValueError(f"{label} must be in [{minimum:g}, {below:g}), got {value}")
    if above is not None and below is not None and not above < value < below:
        raise ValueError(f"{label} must be between {above:g} and {below:g}, got {value}")
    if minimum is not None and value < minimum:
        words = "must not be negative" if minimum == 0 else f"must be at least {minimum:g}"
        raise ValueError(f"{label} {words}, got {value}")
    if above is not None and value <= above:
        raise ValueError(f"{label} must be positive, got {value}" if above == 0
                         else f"{label} must be above {above:g}, got {value}")
    maximum = rule["maximum"]
    if maximum is not None and value > maximum:  # whole numbers in full: 4294967295, not 4.29497e+09
        raise ValueError(f"{label} must be at most {maximum if isinstance(maximum, int) else f'{maximum:g}'}, "
                         f"got {value}")


def check_glove_variant(corpus: str, dimension: str) -> None:
    """Raise ValueError listing the valid choices for an unknown corpus or dimension."""
    if corpus not in GLOVE_VARIANTS:
        raise ValueError(f"unknown GloVe corpus {corpus!r}; choose one of {', '.join(GLOVE_VARIANTS)}")
    dimensions = GLOVE_VARIANTS[corpus]["dimensions"]
    if dimension not in dimensions:
        raise ValueError(f"GloVe {corpus} comes in {', '.join(dimensions)}, not {dimension!r}")


def parse_glove_dim(dimension: str) -> int:
    """``"50d"`` -> 50."""
    text = str(dimension)
    if not (text.endswith("d") and text[:-1].isdigit()):
        raise ValueError(f"--glove-dim must look like 50d, 100d, 200d or 300d, got {dimension!r}")
    return int(text[:-1])

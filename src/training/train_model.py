"""Train the IMDB sentiment classifier from the command line.

    python src/training/train_model.py --data-dir data/imdb --epochs 20

Run with --help for every option. Settings can also come from --config FILE
(YAML or JSON, keys as the flags with dashes or underscores); flags given on the
command line override the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src.exceptions import PipelineError, TrainingInterrupted  # noqa: E402
from src.training.pipeline import TrainConfig, run_training  # noqa: E402
from src.utils.cli import OneLineParser, fail  # noqa: E402

EXIT_INTERRUPTED = 130


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = OneLineParser(description="Train a bidirectional-LSTM sentiment classifier on IMDB.",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help=f"folder with aclImdb/, {'aclImdb_v1.tar.gz'} or train.csv/test.csv; "
                   "IMDB is downloaded there if it is empty (default: %s)" % d.data_dir)
    g.add_argument("--max-vocab-size", type=int, help=f"vocabulary size incl. <pad>, <unk> (default: {d.max_vocab_size})")
    g.add_argument("--min-freq", type=int, help=f"drop words seen fewer times (default: {d.min_freq})")
    g.add_argument("--max-length", type=int, help=f"tokens kept per review (default: {d.max_length})")
    g.add_argument("--truncation", choices=["head", "head_tail"], help=f"keep the start, or start and end, of long reviews (default: {d.truncation})")
    g.add_argument("--validation-split", type=float, help=f"share of train/ held out for validation (default: {d.validation_split})")
    g.add_argument("--max-train-samples", type=int, help="use only N reviews of train/ (quick runs); validation comes out of these")
    g.add_argument("--max-test-samples", type=int, help="evaluate on only N reviews of test/")
    g.add_argument("--num-workers", type=int, help=f"DataLoader worker processes (default: {d.num_workers})")
    g = p.add_argument_group("model")
    g.add_argument("--embedding-dim", type=int, help=f"(default: {d.embedding_dim})")
    g.add_argument("--hidden-dim", type=int, help=f"LSTM units per direction (default: {d.hidden_dim})")
    g.add_argument("--n-layers", type=int, help=f"stacked LSTM layers (default: {d.n_layers})")
    g.add_argument("--dropout", type=float, help=f"dropout between layers and before the classifier (default: {d.dropout})")
    g.add_argument("--embedding-dropout", type=float, help=f"dropout on word vectors (default: {d.embedding_dropout})")
    g.add_argument("--bidirectional", type=_flag, help="true or false (default: true)")
    g.add_argument("--pooling", choices=["max_mean", "max", "mean", "last"], help="how the LSTM states become one vector (default: max_mean)")
    g.add_argument("--sequence-path", choices=["padded", "packed"],
                   help="padded per-direction LSTMs, or one packed (cuDNN) LSTM call; padded was faster on CPU and GPU (default: padded)")
    g.add_argument("--use-glove", action="store_true", help="initialise the embedding with GloVe vectors")
    g.add_argument("--glove-corpus", choices=["6B", "42B", "840B"], help="(default: 6B)")
    g.add_argument("--glove-dim", help="50d, 100d, 200d or 300d; sets --embedding-dim unless that is given (default: 300d)")
    g.add_argument("--glove-cache-dir", help=f"where GloVe files are kept (default: {d.glove_cache_dir})")
    g.add_argument("--freeze-embeddings", action="store_true", help="do not train the embedding")
    g.add_argument("--pretrain-lm-epochs", type=float,
                   help="first pretrain the embedding and first LSTM layer as language models on train/unsup "
                        "plus the training reviews, for this many passes; 0 turns it off "
                        f"(default: {d.pretrain_lm_epochs:g})")
    g.add_argument("--ngram-blend", action=argparse.BooleanOptionalAction,
                   help="after training, fit a logistic regression on word 1-3-grams and blend its prediction "
                        "with the LSTM's, weighted on the validation split (default: off)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help=f"maximum number of epochs (default: {d.epochs})")
    g.add_argument("--batch-size", type=int, help=f"(default: {d.batch_size})")
    g.add_argument("--learning-rate", type=float, help=f"(default: {d.learning_rate})")
    g.add_argument("--weight-decay", type=float, help=f"(default: {d.weight_decay})")
    g.add_argument("--optimizer", choices=["adam", "adamw"], help="(default: adam)")
    g.add_argument("--scheduler", choices=["plateau", "step", "cosine", "none"], help="learning-rate schedule (default: plateau)")
    g.add_argument("--gradient-clip", type=float, help=f"max gradient norm, 0 = off (default: {d.gradient_clip})")
    g.add_argument("--accumulation-steps", type=int, help="batches per optimizer step (default: 1)")
    g.add_argument("--early-stopping-patience", type=int, help=f"epochs without improvement before stopping (default: {d.early_stopping_patience})")
    g.add_argument("--monitor", choices=["val_loss", "val_accuracy"], help="metric that picks the best epoch (default: val_loss)")
    g.add_argument("--amp", action="store_true", help="mixed precision on CUDA (ignored with a warning on CPU)")
    g.add_argument("--detect-anomaly", action="store_true", help="find the operation that produced NaN (slow)")
    g.add_argument("--seed", type=int, help=f"makes a CPU run repeatable (default: {d.seed})")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", help=f"model directory written at the end (default: {d.output_dir})")
    g.add_argument("--checkpoint-dir", help=f"run directory: checkpoints, logs, metrics (default: {d.checkpoint_dir})")
    g.add_argument("--save-every", type=int, help="write an epoch checkpoint every N epochs (default: every epoch)")
    g.add_argument("--save-every-steps", type=int, help="also write checkpoint_mid_epoch.pt every N optimizer steps")
    g.add_argument("--max-checkpoints", type=int, help=f"recent checkpoints kept (default: {d.max_checkpoints})")
    g.add_argument("--save-best-n", type=int, help=f"best checkpoints kept per metric (default: {d.save_best_n})")
    g.add_argument("--resume", help="checkpoint to continue from, or 'auto' for the newest valid one in --checkpoint-dir")
    g.add_argument("--quiet", action="store_true", help="no progress bars; only warnings on the console")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction,
                   help="write TensorBoard scalars to <checkpoint-dir>/tensorboard (default: on if installed)")
    g.add_argument("--config", help="YAML or JSON file with settings; command-line flags override it")
    return p


def read_config_file(path: str) -> Dict[str, Any]:
    """Settings from a YAML or JSON file, with keys checked against TrainConfig."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read config file {path}: {err}") from None
    try:
        if path.endswith(".json"):
            values = json.loads(text)
        else:
            import yaml
            values = yaml.safe_load(text)
    except Exception as err:  # yaml and json raise many types; all mean "not parseable"
        raise ValueError(f"config file {path} is not valid YAML/JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    settings = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(settings) - set(TrainConfig.field_names()))
    if unknown:
        raise ValueError(f"config file {path} has unknown settings: {', '.join(unknown)}")
    return settings


def resolve_config(argv: Optional[List[str]] = None) -> TrainConfig:
    """Defaults, then the config file, then the command line."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    settings: Dict[str, Any] = {}
    if "config" in given:
        try:
            settings.update(read_config_file(given.pop("config")))
        except ValueError as err:
            parser.error(str(err))
    settings.update(given)
    if settings.get("scheduler") is None:
        settings["scheduler"] = "none"
    if settings.get("use_glove") and "embedding_dim" not in settings:
        glove_dim = str(settings.get("glove_dim", TrainConfig.glove_dim))
        if glove_dim.rstrip("d").isdigit():
            settings["embedding_dim"] = int(glove_dim.rstrip("d"))  # the vectors decide the size
    try:
        return TrainConfig(**settings).validate()
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def main(argv: Optional[List[str]] = None) -> int:
    cfg = resolve_config(argv)
    try:
        metrics = run_training(cfg)
    except TrainingInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume auto", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PipelineError, ValueError) as err:
        return fail(str(err))
    if not metrics:  # another rank than 0 under torchrun: rank 0 reports
        return 0
    test = metrics["test"]
    lstm_alone = metrics.get("test_lstm_only")  # present when the n-gram blend is on
    lstm_note = f"; the LSTM alone {100 * lstm_alone['accuracy']:.2f}%" if lstm_alone else ""
    print(f"test accuracy {100 * test['accuracy']:.2f}% (loss {test['loss']:.4f}, {test['n_examples']} reviews"
          f"{lstm_note}); model saved to {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src.config import TrainConfig, as_read, check_setting, flag_name, is_switch  # noqa: E402
from src.exceptions import PipelineError, ResumeRefused, TrainingInterrupted  # noqa: E402
from src.training.pipeline import run_training  # noqa: E402
from src.utils.cli import EXIT_USAGE, OneLineParser, fail  # noqa: E402

EXIT_INTERRUPTED = 130
GROUPS = ("data", "model", "training", "output")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of every ``TrainConfig`` setting, with help, choices and defaults from its field."""
    parser = OneLineParser(prog=prog, description="Train a bidirectional-LSTM sentiment classifier on IMDB.",
                           argument_default=argparse.SUPPRESS)
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for item in fields(TrainConfig):
        rule = item.metadata
        default = "" if item.default is None else f" (default: {_shown(item.default)})"
        metavar = f"{{{','.join(rule['choices'])}}}" if rule["choices"] else item.name.upper()
        kwargs: Dict[str, Any] = {"help": rule["help"] + default, "metavar": metavar}
        if is_switch(item.name):
            kwargs = {"help": kwargs["help"], "action": argparse.BooleanOptionalAction}
        groups[rule["group"]].add_argument(flag_name(item.name), **kwargs)
    groups["output"].add_argument("--config", help="YAML or JSON file with settings; command-line flags override it")
    return parser


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_config_file(path: str) -> Dict[str, Any]:
    """Settings from a YAML or JSON file (keys as the flags, with dashes or underscores)."""
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
        mark = getattr(err, "problem_mark", None)  # YAML's; JSON's message gives the line itself
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config file {path} is not valid YAML/JSON{where}: {problem}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    settings = {str(k).replace("-", "_"): v for k, v in values.items()}
    TrainConfig.check_names(settings, f"config file {path}")
    for name, value in settings.items():  # each value alone, so that the message names the file it is in
        try:
            check_setting(name, as_read(name, value))
        except ValueError as err:
            raise ValueError(f"config file {path}: {err}") from None
    return settings


def resolve_config(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> TrainConfig:
    """Defaults, then the config file, then the command line; every value checked by TrainConfig."""
    parser = build_parser(prog)
    given = vars(parser.parse_args(argv))
    settings: Dict[str, Any] = {}
    try:
        if "config" in given:
            settings.update(read_config_file(given.pop("config")))
        settings.update(given)
        return TrainConfig.from_settings(settings)
    except ValueError as err:
        parser.error(str(err))


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    cfg = resolve_config(argv, prog)
    try:
        metrics = run_training(cfg)
    except TrainingInterrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("\ninterrupted; continue with --resume auto", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ResumeRefused as err:
        fail(str(err))
        return EXIT_USAGE
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

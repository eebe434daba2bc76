"""The ``lstm-sentiment`` command: training, prediction, evaluation, export and the web server in one.

    lstm-sentiment train --data-dir data/imdb --epochs 20
    lstm-sentiment predict --model-dir models "A wonderful film."

Each subcommand is the ``main`` of the module that ``python -m`` runs, with the
arguments after the subcommand passed unchanged. The module is imported only when
its subcommand runs, so ``lstm-sentiment --help`` answers without loading PyTorch.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Dict, List, NamedTuple, Optional

import src
from src.utils.cli import OneLineParser, fail

PROG = "lstm-sentiment"


class Subcommand(NamedTuple):
    module: str  # its main(argv, prog) runs the subcommand
    summary: str  # one line in lstm-sentiment --help


SUBCOMMANDS: Dict[str, Subcommand] = {
    "train": Subcommand("src.training.train_model", "train a classifier on IMDB or your own labelled text"),
    "predict": Subcommand("src.inference.predict", "classify texts with a trained model"),
    "evaluate": Subcommand("src.inference.evaluate", "score a trained model on labelled data; write plots"),
    "export": Subcommand("src.inference.export", "export a model's LSTM to ONNX for faster CPU prediction"),
    "serve": Subcommand("src.inference.serve", "serve a web page and HTTP API that classify texts"),
}


def package_version() -> str:
    """The installed distribution's version; the source tree's ``src.__version__`` when run from a clone."""
    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:
        return src.__version__


def build_parser(prog: str = PROG) -> OneLineParser:
    """The top-level help, ``--version`` and the one-line error of an unknown subcommand."""
    parser = OneLineParser(prog=prog, description="Train and use a bidirectional-LSTM text classifier.",
                           epilog=f"Run '{prog} COMMAND --help' for the flags of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """Run ``prog COMMAND ARGS...``: the command's module's ``main(ARGS, prog="prog COMMAND")``.

    The arguments after the command go to it untouched (argparse subparsers would
    reorder or consume some, such as ``--``), so each command behaves exactly as its
    ``python -m`` form.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = build_parser(prog)
        parser.parse_args(argv[:1])  # exits: --help, --version, or the one-line error of an unknown command
        parser.error(f"give a command: {', '.join(SUBCOMMANDS)}")
    name, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(SUBCOMMANDS[name].module)
    except ModuleNotFoundError as err:
        return fail(f"{prog} {name} cannot import {err.name}: install the package with its dependencies "
                    "(pip install . in the repository)")
    return module.main(rest, prog=f"{prog} {name}")

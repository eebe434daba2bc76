"""``python -m src``: the ``lstm-sentiment`` command, for a clone that is not installed."""

import sys

from src.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m src"))

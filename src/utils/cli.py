"""What the command lines share: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE, EXIT_FAILURE = 2, 1


class OneLineParser(argparse.ArgumentParser):
    """Report a bad flag in one line (plus a pointer to --help), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILURE

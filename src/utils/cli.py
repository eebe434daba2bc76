"""What the command lines share: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE, EXIT_FAILURE = 2, 1
EXIT_OUTPUT_CLOSED = 128 + 13  # as a command stopped by SIGPIPE: the reader of its output has gone (`| head`)


class OneLineParser(argparse.ArgumentParser):
    """Report a bad flag in one line (plus a pointer to --help), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def output_closed() -> int:
    """Stop quietly where the reader of standard output has gone (``| head``): point standard output at the
    null device, so that Python's flush at exit does not report the closed pipe, and return the exit status
    of a command stopped by SIGPIPE."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return EXIT_OUTPUT_CLOSED

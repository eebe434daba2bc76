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


def discard_standard_output() -> None:
    """Point standard output at the null device, so that what it could not take (a closed pipe, a full disk)
    is not written again, and reported again, by Python's flush at exit."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def output_closed() -> int:
    """Stop quietly where the reader of standard output has gone (``| head``); the exit status of a command
    stopped by SIGPIPE."""
    discard_standard_output()
    return EXIT_OUTPUT_CLOSED

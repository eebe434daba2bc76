"""Classify reviews from the command line.

    python -m src.inference.predict --model-dir models "A wonderful film." "Two hours I will never get back."
    python -m src.inference.predict --model-dir models --input reviews.txt --output predictions.jsonl
    python -m src.inference.predict --model-dir model-a --model-dir model-b "A wonderful film."

``--input`` takes one text per line, or a table (``.csv``, ``.tsv``, ``.jsonl`` or
``.parquet``) with a ``text`` column (``--text-column``); it is read, classified and
written in chunks, so a file of any size takes the same memory, with a progress bar
on stderr. Results, in input order, are JSON objects, one per line (``--format csv``:
CSV rows): ``line`` (of ``--input``: the 1-based line, blank lines counted, or a table's
data row), ``text``, ``label`` (a class name), ``probabilities`` (every class by name)
and, of two classes, ``probability`` (the positive class's), to ``--output`` (replaced
only once every prediction is written) or the screen. Several ``--model-dir`` average
the models' probabilities (an ensemble). ``--explain`` adds each word's contribution
to every object (``explanation``; JSON lines only; docs/explanations.md).
"""

from __future__ import annotations

import csv
import errno
import itertools
import json
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

from tqdm import tqdm

from src.config import default_of
from src.data.tables import codec_of, is_table, iter_texts
from src.exceptions import PipelineError
from src.utils.cli import OneLineParser, discard_standard_output, fail, output_closed
from src.models.model_dir import trained_column
from src.inference.predictor import (DEFAULT_BATCH_SIZE, add_lstm_only_argument, add_runtime_arguments,
                                      load_predictor)
from src.utils.io import atomic_write

CHUNK = 1024  # texts read, classified and written at a time: memory stays the same for a file of any size


def build_parser(prog: str = "python -m src.inference.predict") -> OneLineParser:
    parser = OneLineParser(prog=prog, description="Classify movie reviews.")
    parser.add_argument("reviews", nargs="*", help="review texts (or use --input)")
    parser.add_argument("--model-dir", required=True, action="append",
                        help="model directory written by training (--output-dir); repeat it to average several models")
    parser.add_argument("--input", help="file with one text per line ('-': standard input), or a .csv, .tsv, "
                                        ".jsonl or .parquet table")
    parser.add_argument("--text-column", help="the table's column of texts (default: the model's training data's)")
    parser.add_argument("--output", help="write the predictions here instead of to the screen (atomically)")
    parser.add_argument("--format", default="jsonl", choices=("jsonl", "csv"), help="JSON lines or CSV (default: jsonl)")
    parser.add_argument("--encoding", default="utf-8", help="encoding of --input, and of texts on the command line "
                        "that are not UTF-8 (default: utf-8)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"reviews per batch; larger is faster on a GPU (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: auto)")
    add_runtime_arguments(parser)
    add_lstm_only_argument(parser)
    parser.add_argument("--explain", action="store_true",
                        help="add each word's contribution to the log-odds (explanation; docs/explanations.md)")
    return parser


# Valid inside a JSON string, but line ends to many readers (str.splitlines, JavaScript): escaped,
# so that every output object stays on its own line.
_LINE_LIKE = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(record: dict) -> str:
    """``record`` as one line of JSON Lines, text kept readable (not ASCII-escaped)."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_LIKE) + "\n"


class _Writer:
    """Predictions as JSON lines or CSV rows (``line``, ``text``, ``label``, ``probability`` of two classes,
    then ``probability_<class>`` of each class)."""

    def __init__(self, handle: TextIO, output_format: str, class_names: Sequence[str]):
        self.handle, self.format, self.class_names = handle, output_format, list(class_names)
        if output_format == "csv":
            self.csv = csv.writer(handle)
            binary = ["probability"] if len(class_names) == 2 else []
            self.csv.writerow(["line", "text", "label", *binary, *(f"probability_{name}" for name in class_names)])

    def write(self, number: Optional[int], text: str, result: Dict[str, Any]) -> None:
        if self.format == "jsonl":
            self.handle.write(json_line({**({"line": number} if number is not None else {}), "text": text, **result}))
            return
        binary = [result["probability"]] if "probability" in result else []
        self.csv.writerow([number if number is not None else "", text, result["label"], *binary,
                           *(result["probabilities"][name] for name in self.class_names)])


def _predict_all(predictor, numbered: Iterable[Tuple[Optional[int], str]], handle: TextIO, args) -> int:
    """Classify ``(number, text)`` in chunks and write each chunk's predictions as it is done; the count."""
    writer, count = _Writer(handle, args.format, predictor.class_names), 0
    progress = tqdm(unit="text", desc="predict", file=sys.stderr, disable=None)
    chunks = iter(lambda: list(itertools.islice(numbered, CHUNK)), [])
    classify = predictor.explain_batch if args.explain else predictor.predict_batch
    for chunk in chunks:
        numbers, texts = zip(*chunk)
        for number, text, result in zip(numbers, texts, classify(list(texts), args.batch_size)):
            writer.write(number, text, result)
        count += len(chunk)
        progress.update(len(chunk))
    progress.close()
    if count == 0:
        raise PipelineError(f"{args.input} holds no reviews to classify")
    return count


def _text_column(args) -> str:
    """``--text-column``, else the column the (first) model was trained on, for a table ``--input``."""
    if args.text_column or not is_table(args.input):
        return args.text_column or default_of("text_column")
    return trained_column(args.model_dir[0], "text_column")


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def _predict_to_standard_output(predictor, numbered: Iterable[Tuple[Optional[int], str]], args) -> int:
    """Write the predictions to standard output; a reader that stops reading (``| head``) ends it quietly."""
    try:
        _predict_all(predictor, numbered, sys.stdout, args)
        sys.stdout.flush()
    except BrokenPipeError:
        return output_closed()
    except OSError as err:
        discard_standard_output()
        return fail(f"could not write the predictions to standard output ({err.strerror or err})")
    return 0


def _command_line_text(text: str, number: int, encoding: str) -> str:
    """The ``number``th text given on the command line, its bytes read in ``encoding`` where they were not
    UTF-8: Python keeps such bytes as lone surrogates, which no output could hold."""
    if not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode(codec_of(encoding))
    except LookupError:
        raise ValueError(f"unknown --encoding {encoding!r}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"text {number} on the command line is not {encoding} (byte {err.start}: "
                         f"{raw[err.start]:#04x}); set the terminal to UTF-8, or name its encoding with "
                         "--encoding (e.g. --encoding latin-1)") from None


def main(argv: Optional[List[str]] = None, prog: str = "python -m src.inference.predict") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.explain and args.format == "csv":
        parser.error("--explain writes nested explanations, which CSV cannot hold; use --format jsonl")
    if bool(args.reviews) == bool(args.input):
        parser.error("give review texts or --input FILE (one of them)")
    if args.input == "-" and not os.path.exists("-"):  # the usual name of standard input
        args.input = "/dev/stdin"
    if args.input and args.output and _same_file(args.input, args.output):
        parser.error(f"--output {args.output} is the --input file, which the predictions would replace; "
                     "choose another --output")
    try:
        numbered = iter_texts(args.input, _text_column(args), args.encoding) if args.input else \
            iter([(None, _command_line_text(text, number, args.encoding))  # all checked first
                  for number, text in enumerate(args.reviews, 1)])
        predictor = load_predictor(args.model_dir, device=args.device, runtime=args.runtime, precision=args.precision,
                                   lstm_only=args.lstm_only)
        if not args.output:
            return _predict_to_standard_output(predictor, numbered, args)
        with atomic_write(args.output, "w") as handle:  # in place of the old file only once all are written
            count = _predict_all(predictor, numbered, handle, args)
    except (PipelineError, ValueError) as err:
        return fail(str(err))
    except BrokenPipeError:  # --output /dev/stdout, or a pipe, whose reader stopped reading
        return output_closed()
    except OSError as err:
        advice = "free some space or choose another --output" if err.errno == errno.ENOSPC else "choose another --output"
        return fail(f"could not write the predictions to {args.output} ({err.strerror or err}); a file that "
                    f"was there is unchanged: {advice}")
    print(f"{count} predictions written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

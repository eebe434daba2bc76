"""Classify reviews from the command line.

    python -m src.inference.predict --model-dir models "A wonderful film." "Two hours I will never get back."
    python -m src.inference.predict --model-dir models --input reviews.txt --output predictions.jsonl
    python -m src.inference.predict --model-dir model-a --model-dir model-b "A wonderful film."

``--input`` takes one text per line, or a table (``.csv``, ``.tsv``, ``.jsonl`` or
``.parquet``) with a ``text`` column (``--text-column``). Results are JSON objects, one per
line, in input order: ``text``, ``label`` (a class name), ``probabilities`` (every class
by name) and, of two classes, ``probability`` (the positive class's), to ``--output``
(written atomically) or the screen. Several ``--model-dir`` average the models'
probabilities (an ensemble).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

from src.config import default_of
from src.data.tables import is_table, read_table
from src.exceptions import PipelineError
from src.utils.cli import OneLineParser, fail
from src.models.model_dir import trained_column
from src.inference.predictor import DEFAULT_BATCH_SIZE, RUNTIMES, load_predictor
from src.utils.io import atomic_write_text


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m src.inference.predict", description="Classify movie reviews.")
    parser.add_argument("reviews", nargs="*", help="review texts (or use --input)")
    parser.add_argument("--model-dir", required=True, action="append",
                        help="model directory written by training (--output-dir); repeat it to average several models")
    parser.add_argument("--input", help="file with one text per line, or a .csv, .tsv, .jsonl or .parquet table")
    parser.add_argument("--text-column", help="the table's column of texts (default: the model's training data's)")
    parser.add_argument("--output", help="write JSON lines here instead of to the screen")
    parser.add_argument("--encoding", default="utf-8", help="encoding of --input (default: utf-8)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"reviews per batch; larger is faster on a GPU (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="auto: ONNX Runtime on a CPU when the model directory holds model.onnx "
                             "(python -m src.inference.export), else PyTorch (default: auto)")
    return parser


# Valid inside a JSON string, but line ends to many readers (str.splitlines, JavaScript): escaped,
# so that every output object stays on its own line.
_LINE_LIKE = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(record: dict) -> str:
    """``record`` as one line of JSON Lines, text kept readable (not ASCII-escaped)."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_LIKE) + "\n"


def file_lines(text: str) -> List[str]:
    """The lines of a text file: split at "\n" (and "\r\n") only, not at the other characters
    ``str.splitlines`` treats as line ends (U+0085, U+2028, form feed, ...), which can occur inside a review."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_reviews(path: str, encoding: str, text_column: str = default_of("text_column")) -> List[str]:
    """Texts from a table's text column (every row, in order, as written) or a text file (one per line, blank
    lines skipped)."""
    if is_table(path):
        return read_table(path, text_column, None, empty="keep", encoding=encoding, clean=False).texts
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise PipelineError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as err:
        raise PipelineError(f"{path} is not valid {encoding} (byte {err.start}); pass its encoding with "
                            "--encoding, e.g. --encoding latin-1") from None
    except LookupError:
        raise PipelineError(f"unknown encoding {encoding!r}") from None
    return [line for line in file_lines(text) if line.strip()]


def _text_column(args) -> str:
    """``--text-column``, else the column the (first) model was trained on, for a table ``--input``."""
    if args.text_column or not is_table(args.input):
        return args.text_column or default_of("text_column")
    return trained_column(args.model_dir[0], "text_column")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if bool(args.reviews) == bool(args.input):
        parser.error("give review texts or --input FILE (one of them)")
    try:
        reviews = read_reviews(args.input, args.encoding, _text_column(args)) if args.input else args.reviews
        if not reviews:
            return fail(f"{args.input} holds no reviews to classify")
        predictor = load_predictor(args.model_dir, device=args.device, runtime=args.runtime)
        results = predictor.predict_batch(reviews, batch_size=args.batch_size)
    except (PipelineError, ValueError) as err:
        return fail(str(err))
    lines = "".join(json_line({"text": text, **result}) for text, result in zip(reviews, results))
    if args.output:
        try:
            atomic_write_text(args.output, lines)
        except OSError as err:
            return fail(f"could not write the predictions to {args.output} ({err.strerror or err}); a file that "
                        "was there is unchanged: free some space or choose another --output")
        print(f"{len(results)} predictions written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

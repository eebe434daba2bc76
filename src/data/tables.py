"""Your own data: texts and labels from CSV, TSV, JSON Lines or Parquet files.

Every problem is reported as one ``DataError`` naming the file and the line (row for
Parquet) and saying what to change. Parquet needs the ``pyarrow`` package.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from src.data.labels import label_name
from src.exceptions import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
SPLIT_FILE_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}

PathLike = Union[str, Path]
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)
Record = Tuple[str, Mapping[str, Any]]  # (where in the file: "line 5" or "row 3", the row's fields)


class Table(NamedTuple):
    """The texts of a file, their labels as names (None when no label column was asked for), and where
    each row is in the file (for error messages)."""

    texts: List[str]
    labels: Optional[List[str]]
    rows: List[str]


def clean_text(text: str) -> str:
    """Replace HTML line breaks (``<br />``, as in the IMDB reviews) with spaces."""
    return _MARKUP.sub(" ", text)


def is_table(path: PathLike) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def read_table(path: PathLike, text_column: str = "text", label_column: Optional[str] = "label",
               empty: str = "error", encoding: str = "utf-8", clean: bool = True) -> Table:
    """The texts (and labels) of a CSV, TSV, JSON Lines or Parquet file (text files in ``encoding``), with
    the ``<br />`` line breaks of web text as spaces (unless not ``clean``).

    A missing label is an error; a row with an empty text is one too (``empty="error"``), or is skipped
    (``"skip"``, for unlabeled text) or kept as "" (``"keep"``, for prediction: a result for every row)."""
    path = Path(path)
    wanted = [(text_column, "--text-column")] + ([(label_column, "--label-column")] if label_column else [])
    columns, records = _open(path, wanted, encoding)
    names = {name: _column(path, columns, name, flag) for name, flag in wanted}
    texts: List[str] = []
    labels: Optional[List[str]] = [] if label_column is not None else None
    rows: List[str] = []
    for where, record in records:
        text = _text(path, where, record.get(names[text_column]), text_column)
        text = clean_text(text) if clean and text is not None else text
        if text is None or not text.strip():
            if empty == "skip":
                continue
            if empty == "error":
                raise DataError(f"{path}, {where}: the text ({text_column!r}) is empty; fill it in or remove the "
                                "row")
            text = text or ""
        if labels is not None:
            label = label_name(record.get(names[label_column]))
            if label is None:
                raise DataError(f"{path}, {where}: the label ({label_column!r}) is missing; fill it in or remove "
                                "the row")
            labels.append(label)
        texts.append(text)
        rows.append(where)
    if not texts:
        raise DataError(f"{path} holds no rows; check the file")
    return Table(texts, labels, rows)


def read_texts(path: PathLike, text_column: str = "text") -> List[str]:
    """Unlabeled texts: a table's text column, or any other file's non-blank lines (UTF-8)."""
    path = Path(path)
    if is_table(path):
        return read_table(path, text_column, None, empty="skip").texts
    lines = decode_text(_read_bytes(path), path).split("\n")
    return [line.rstrip("\r") for line in lines if line.strip()]


def find_split_files(data_dir: PathLike) -> Optional[Dict[str, Path]]:
    """``{"train": ..., "test": ..., "validation": ...}`` (validation only if present) of a folder of table
    files named ``train``, ``test`` and ``validation``/``valid``/``dev``; None when it has no train file."""
    root = Path(data_dir)
    if not root.is_dir():
        return None
    found: Dict[str, Path] = {}
    for split, stems in SPLIT_FILE_NAMES.items():
        matches = [root / f"{stem}{suffix}" for stem in stems for suffix in TABLE_SUFFIXES
                   if (root / f"{stem}{suffix}").is_file()]
        if len(matches) > 1:
            raise DataError(f"{root} holds {' and '.join(m.name for m in matches)} for the {split} split; keep one, "
                            f"or name it with --{split}-file")
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        return None
    if "test" not in found:
        raise DataError(f"{root} holds {found['train'].name} but no test file (test.csv, .tsv, .jsonl or .parquet); "
                        "add one, or name it with --test-file")
    return found


def _column(path: Path, columns: Sequence[str], wanted: str, flag: str) -> str:
    """The file's name of column ``wanted``: exactly, else the one that differs only in case or spaces."""
    if wanted in columns:
        return wanted
    loose = [name for name in columns if str(name).strip().lower() == wanted.strip().lower()]
    if len(loose) == 1:
        return loose[0]
    shown = ", ".join(repr(name) for name in list(columns)[:10]) or "none"
    raise DataError(f"{path} has no {wanted!r} column (its columns: {shown}); name the right one with {flag}")


def _text(path: Path, where: str, value: Any, column: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise DataError(f"{path}, {where}: the text ({column!r}) is a {type(value).__name__}, not a string")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the file name") from None
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err})") from None


def decode_text(raw: bytes, path: object, encoding: str = "utf-8") -> str:
    """``raw`` as text (UTF-8 with or without a byte-order mark, or ``encoding``); DataError naming ``path``."""
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not valid {'UTF-8' if utf8 else encoding} (byte {err.start}); re-save it as "
                        "UTF-8") from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None


def _open(path: Path, wanted: List[Tuple[str, str]], encoding: str) -> Tuple[List[str], Iterator[Record]]:
    """The file's column names and its rows, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown kind of file; use .csv, .tsv, .jsonl or .parquet")
    if suffix == ".parquet":
        return _parquet(path, wanted)
    text = decode_text(_read_bytes(path), path, encoding)
    if suffix == ".jsonl":
        return _json_lines(path, text)
    return _delimited(path, text, "\t" if suffix == ".tsv" else ",")


def _delimited(path: Path, text: str, delimiter: str) -> Tuple[List[str], Iterator[Record]]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    if "\x00" in text:
        raise DataError(f"{path} is not a {kind} text file (it holds NUL bytes); save it as {kind}")
    # quoted fields as pandas and Python's csv module write and read them, in TSV too
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as err:
        raise DataError(f"{path} is not a readable {kind} file ({err}); save it as {kind} with a header line") from None
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise DataError(f"{path} has more than one column named {repeated[0]!r}; rename them")

    def rows() -> Iterator[Record]:  # a row's line is the line it ends on (the only one, but for quoted line breaks)
        try:
            for record in reader:
                yield f"line {reader.line_num}", record
        except csv.Error as err:
            raise DataError(f"{path}, line {reader.line_num}: not readable as {kind} ({err})") from None
    return columns, rows()


def _json_lines(path: Path, text: str) -> Tuple[List[str], Iterator[Record]]:
    records: List[Record] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {number} is not JSON ({err.msg}); a .jsonl file holds one JSON object "
                            "per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number} is a JSON {type(record).__name__}, not an object; a .jsonl file "
                            "holds one JSON object per line")
        records.append((f"line {number}", record))
    columns = list(dict.fromkeys(key for _, record in records for key in record))
    return columns, iter(records)


def _parquet(path: Path, wanted: List[Tuple[str, str]]) -> Tuple[List[str], Iterator[Record]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError(f"reading {path} needs the pyarrow package: pip install pyarrow") from None
    try:
        columns = list(parquet.read_schema(path).names)
        chosen = [_column(path, columns, name, flag) for name, flag in wanted]
        table = parquet.read_table(path, columns=chosen).to_pydict()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the file name") from None
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError and others for a file that is not Parquet
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is not a readable Parquet file ({reason})") from None
    count = len(next(iter(table.values()))) if table else 0
    return columns, ((f"row {i + 1}", {name: values[i] for name, values in table.items()}) for i in range(count))

"""Your own data: texts and labels from CSV, TSV, JSON Lines or Parquet files.

Every problem is reported as one ``DataError`` naming the file and the line (row for
Parquet) and saying what to change. Parquet needs the ``pyarrow`` package.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from src.data.labels import label_name
from src.exceptions import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
SPLIT_FILE_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}

PathLike = Union[str, Path]
MAX_FIELD_CHARACTERS = 1 << 24  # a text of up to 16 M characters (the csv module's default stops at 131,072)
MAX_FIELD_BYTES = 4 * MAX_FIELD_CHARACTERS  # the most those take in UTF-8
# a line of a table: a text with every character escaped as JSON may write it ("\ud83d\ude00": 12 characters)
# and room for the other columns
MAX_LINE_CHARACTERS = 12 * MAX_FIELD_CHARACTERS + (1 << 20)
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)
# (the row's number: a CSV's data row, a JSON Lines file's line, a Parquet file's row; where it is in the file
# for messages: "line 5" or "row 3"; the row's fields)
Record = Tuple[int, str, Mapping[str, Any]]


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
               skip_empty: bool = False) -> Table:
    """The texts (and labels) of a CSV, TSV, JSON Lines or Parquet file (UTF-8), with the ``<br />`` line
    breaks of web text as spaces.

    A missing label is an error; so is a row with an empty text, unless ``skip_empty`` (for unlabeled text)."""
    path = Path(path)
    wanted = [(text_column, "--text-column")] + ([(label_column, "--label-column")] if label_column else [])
    columns, records = _open(path, wanted, "utf-8")
    names = {name: _column(path, columns, name, flag) for name, flag in wanted}
    texts: List[str] = []
    labels: Optional[List[str]] = [] if label_column is not None else None
    rows: List[str] = []
    for _, where, record in records:
        text = clean_text(_text(path, where, record.get(names[text_column]), text_column) or "")
        if not text.strip():
            if skip_empty:
                continue
            raise DataError(f"{path}, {where}: the text ({text_column!r}) is empty; fill it in or remove the row")
        if labels is not None:
            label = label_name(_label(path, where, record.get(names[label_column]), label_column))
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
        return read_table(path, text_column, None, skip_empty=True).texts
    texts = [clean_text(text) for _, text in iter_texts(path)]
    if not texts:  # as a table without rows is refused
        raise DataError(f"{path} holds no text (every line is blank); give a file with one text per line")
    return texts


def iter_texts(path: PathLike, text_column: str = "text", encoding: str = "utf-8") -> Iterator[Tuple[int, str]]:
    """``(number, text)`` of every text of a file, read as consumed (constant memory), texts as written: of a
    table every row (an empty text as ""; number: a CSV's data row, a JSON Lines file's line, a Parquet row),
    of any other file every non-blank line (number: the line, blank lines counted; lines end at "\\n" only)."""
    path = Path(path)
    if is_table(path):
        columns, records = _open(path, [(text_column, "--text-column")], encoding)
        name = _column(path, columns, text_column, "--text-column") if columns else text_column
        for number, where, record in records:
            yield number, _text(path, where, record.get(name), text_column) or ""
        return
    handle = _text_handle(path, encoding, newline="\n")
    position = {"line": 0}

    def lines() -> Iterator[Record]:
        for number, line in enumerate(_bounded_lines(path, handle, MAX_FIELD_CHARACTERS, "a text"), start=1):
            position["line"] = number
            yield number, "", {"text": line.rstrip("\n").rstrip("\r")}
    for number, _, record in _reading(path, handle, lines(), lambda: position["line"], "text"):
        if record["text"].strip():
            yield number, record["text"]


def find_split_file(root: Path, split: str) -> Optional[Path]:
    """The table file of ``split`` in the folder ``root`` (``SPLIT_FILE_NAMES``), or None. Names are matched
    without regard to case (``Train.CSV`` too), as a case-insensitive file system would."""
    wanted = {f"{stem}{suffix}" for stem in SPLIT_FILE_NAMES[split] for suffix in TABLE_SUFFIXES}
    try:
        matches = sorted(path for path in root.iterdir() if path.name.lower() in wanted and path.is_file())
    except OSError as err:
        raise DataError(f"cannot list the folder {root} ({err.strerror or err}); check its permissions") from None
    if len(matches) > 1:
        raise DataError(f"{root} holds {' and '.join(m.name for m in matches)} for the {split} split; keep one, "
                        f"or name it with --{split}-file")
    return matches[0] if matches else None


def find_split_files(data_dir: PathLike) -> Optional[Dict[str, Path]]:
    """``{"train": ..., "test": ..., "validation": ...}`` (validation only if present) of a folder of table
    files named ``train``, ``test`` and ``validation``/``valid``/``dev``; None when it has no train file."""
    root = Path(data_dir)
    if not root.is_dir():
        return None
    found = {split: path for split in SPLIT_FILE_NAMES if (path := find_split_file(root, split)) is not None}
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
    if path.suffix.lower() == ".jsonl":  # the columns are the first object's fields
        raise DataError(f"{path}: the first object has no {wanted!r} field (its fields: {shown}); give every line "
                        f"one, or name the right one with {flag}")
    raise DataError(f"{path} has no {wanted!r} column (its columns: {shown}); name the right one with {flag}")


def _text(path: Path, where: str, value: Any, column: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise DataError(f"{path}, {where}: the text ({column!r}) is not a string but {type(value).__name__} {value!r:.40}")


def _label(path: Path, where: str, value: Any, column: str) -> Any:
    """``value`` if it can name one class: a JSON list or object (several labels, or a record) cannot."""
    if isinstance(value, (list, tuple, dict)):
        kind = "an object" if isinstance(value, dict) else "a list"
        raise DataError(f"{path}, {where}: the label ({column!r}) is {kind}, not one class: {value!r:.40}; give "
                        "each row one label")
    return value


def codec_of(encoding: str) -> str:
    """The codec that reads ``encoding``; UTF-8 also with a byte-order mark (as Windows tools write it)."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def decode_text(raw: bytes, path: object, encoding: str = "utf-8") -> str:
    """``raw`` as text (UTF-8 with or without a byte-order mark, or ``encoding``); DataError naming ``path``."""
    utf8 = codec_of(encoding) == "utf-8-sig"
    try:
        return raw.decode(codec_of(encoding))
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not valid {'UTF-8' if utf8 else encoding} (byte {err.start}); re-save it as "
                        "UTF-8") from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None


def _open(path: Path, wanted: List[Tuple[str, str]], encoding: str) -> Tuple[List[str], Iterator[Record]]:
    """The file's column names and its rows, read as they are consumed (a file of any size in constant memory),
    by the file's extension."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown kind of file; use .csv, .tsv, .jsonl or .parquet")
    if suffix == ".parquet":
        return _parquet(path, wanted)
    handle = _text_handle(path, encoding)
    try:
        if suffix == ".jsonl":
            return _json_lines(path, handle)
        return _delimited(path, handle, "\t" if suffix == ".tsv" else ",")
    except BaseException:
        handle.close()
        raise


def _text_handle(path: Path, encoding: str, newline: Optional[str] = "") -> io.TextIOBase:
    try:
        return open(path, encoding=codec_of(encoding), newline=newline)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the file name") from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror or err})") from None


def _reading(path: Path, handle: io.TextIOBase, records: Iterator[Record], line: Callable[[], int],
             kind: str) -> Iterator[Record]:
    """``records``, with the file closed at the end and its decoding and parsing errors as one DataError each
    (``line()`` tells where the reading is)."""
    try:
        with handle:
            yield from records
    except (UnicodeDecodeError, csv.Error) as err:
        raise _read_error(path, handle, err, line() + 1 if isinstance(err, UnicodeDecodeError) else line(), kind) \
            from None


def _bounded_lines(path: Path, handle: io.TextIOBase, limit: int, what: str) -> Iterator[str]:
    """The lines of ``handle`` as read (line ends kept), each read stopping just past ``limit`` characters, so
    that a file without line breaks (/dev/zero) is refused in bounded memory, not read whole."""
    for number, line in enumerate(iter(lambda: handle.readline(limit + 2), ""), start=1):
        if (len(line) == limit + 2 and not line.endswith("\n")) or len(line.rstrip("\n").rstrip("\r")) > limit:
            raise DataError(f"{path}, line {number}: longer than {limit:,} characters, the most {what} may have; "
                            "is it the file you meant?")
        yield line


def _read_error(path: Path, handle: io.TextIOBase, err: Exception, line: int, kind: str) -> DataError:
    if isinstance(err, UnicodeDecodeError):
        exact = _undecodable_line(path, handle.encoding)
        where = f"line {exact}" if exact is not None else f"near line {line}"
        return DataError(f"{path} is not valid {handle.encoding.replace('-sig', '').upper()} ({where}); "
                         "re-save it as UTF-8 (predict also takes its encoding: --encoding, e.g. --encoding latin-1)")
    if "NUL" in str(err):
        return DataError(f"{path} is not a {kind} text file (it holds NUL bytes); save it as {kind}")
    return DataError(f"{path}, line {line}: not readable as {kind} ({err})")


def _undecodable_line(path: Path, encoding: str) -> Optional[int]:
    """The line of the first byte that UTF-8 (with or without a byte-order mark) cannot decode; None for other
    encodings, whose characters may hold a line break's byte. The text reader decodes blocks ahead of the
    lines it hands out, so its own position can be thousands of lines short."""
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        return None
    decoder, line = codecs.getincrementaldecoder(encoding)(), 1
    with open(path, "rb") as raw:  # no UTF-8 character holds the byte of "\n": a line fails on its own bytes
        for piece in iter(lambda: raw.readline(1 << 20), b""):
            try:
                decoder.decode(piece)
            except UnicodeDecodeError:
                return line
            line += piece.endswith(b"\n")
    return line


def _delimited(path: Path, handle: io.TextIOBase, delimiter: str) -> Tuple[List[str], Iterator[Record]]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARACTERS))  # raised, never lowered
    # quoted fields as pandas and Python's csv module write and read them, in TSV too
    lines = _LastLine(_bounded_lines(path, handle, MAX_LINE_CHARACTERS, f"a line of a {kind} file"))
    reader = csv.DictReader(lines, delimiter=delimiter)
    try:
        columns = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise _read_error(path, handle, err, 1, kind) from None
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise DataError(f"{path} has more than one column named {repeated[0]!r}; rename them")

    def rows() -> Iterator[Record]:  # a row's line is the one it ends on (the only one, but for quoted line breaks)
        lines.mark()
        for number, record in enumerate(reader, start=1):
            if any("\x00" in value for value in record.values() if isinstance(value, str)):
                raise csv.Error("NUL byte")  # Python 3.11's csv reads NUL bytes; a text file holds none
            start = lines.first or reader.line_num
            if reader.line_num > start and '"' not in lines.last:  # a row of several lines ends on its quote
                raise DataError(f"{path}, line {start}: a quote opened there is never closed, so the rest of the "
                                f"file ({reader.line_num - start + 1} lines) would be one text; double the quotes "
                                'inside a text ("") or remove the stray one')
            _check_fields(path, reader, record, len(columns), kind)
            yield number, f"line {reader.line_num}", record
            lines.mark()
    return columns, _reading(path, handle, rows(), lambda: reader.line_num, kind)


def _check_fields(path: Path, reader: csv.DictReader, record: Mapping[Any, Any], expected: int, kind: str) -> None:
    """Refuse a row of more or fewer fields than the header (DictReader would drop the extra ones, or fill the
    missing ones with None, so a text with an unquoted comma lost its end)."""
    where = f"{path}, line {reader.line_num}"
    extra = record.get(None) or []
    if extra:
        delimiter = "tab" if kind == "TSV" else "comma"
        raise DataError(f"{where}: {expected + len(extra)} fields where the header has {expected}; a text that "
                        f'holds a {delimiter} must be in double quotes ("..."), with its own quotes doubled ("")')
    missing = [str(key) for key, value in record.items() if value is None]
    if missing:
        raise DataError(f"{where}: no value for {', '.join(missing)}; give every row a value for each column")


class _LastLine:
    """An iterator of lines that remembers the last one it gave and the number of the first one, not blank,
    since ``mark`` (where the csv reader's next row starts: it skips blank lines, and keeps no line)."""

    def __init__(self, lines: Iterator[str]):
        self._lines, self.last, self.number, self.first = lines, "", 0, None

    def mark(self) -> None:
        self.first = None

    def __iter__(self) -> "_LastLine":
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        self.number += 1
        if self.first is None and self.last.strip("\r\n"):
            self.first = self.number
        return self.last


def _json_lines(path: Path, handle: io.TextIOBase) -> Tuple[List[str], Iterator[Record]]:
    """The columns are the first object's keys."""
    position = {"line": 0}

    def objects() -> Iterator[Record]:
        for number, line in enumerate(_bounded_lines(path, handle, MAX_LINE_CHARACTERS, "a JSON Lines line"), 1):
            position["line"] = number
            if line.strip():
                yield number, f"line {number}", _json_object(path, number, line)

    records = _reading(path, handle, objects(), lambda: position["line"], "JSON Lines")
    first = next(records, None)
    if first is None:
        return [], iter(())
    return list(first[2]), itertools.chain([first], records)


def _json_object(path: Path, number: int, line: str) -> Dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {number} is not JSON ({err.msg}); a .jsonl file holds one JSON object "
                        "per line") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {number} is a JSON {type(record).__name__}, not an object; a .jsonl file "
                        "holds one JSON object per line")
    return record


def _parquet(path: Path, wanted: List[Tuple[str, str]]) -> Tuple[List[str], Iterator[Record]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError(f"reading {path} needs the pyarrow package: pip install pyarrow") from None
    with _parquet_errors(path):
        source = parquet.ParquetFile(path)
        columns = list(source.schema_arrow.names)
    chosen = [_column(path, columns, name, flag) for name, flag in wanted]

    def rows() -> Iterator[Record]:
        number = 0
        with _parquet_errors(path):
            for batch in source.iter_batches(batch_size=4096, columns=chosen):
                values = batch.to_pydict()
                for i in range(batch.num_rows):
                    number += 1
                    yield number, f"row {number}", {name: column[i] for name, column in values.items()}
    return columns, rows()


@contextlib.contextmanager
def _parquet_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the file name") from None
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError and others for a file that is not Parquet
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is not a readable Parquet file ({reason})") from None

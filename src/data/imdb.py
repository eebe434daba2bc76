"""The IMDB Large Movie Review data set: download, safe extraction and loading.

``load_imdb`` reads any of these under ``data_dir`` (first match wins):

* the extracted tree ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``
  (or the same tree directly under ``data_dir``),
* the archive ``aclImdb_v1.tar.gz`` itself, read in place (nothing is written),
* your own data as ``train`` and ``test`` files (``src/data/tables.py``), the classes
  named by the training file's labels (``src.data.loaders.load_splits``).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from src.data.labels import IMDB_CLASS_NAMES
from src.data.tables import MAX_FIELD_BYTES, clean_text, decode_text, find_split_files
from src.exceptions import DataError
from src.utils.archive import extract_tar_atomically
from src.utils.device import available_memory
from src.utils.download import download_file

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVE_NAME = "aclImdb_v1.tar.gz"
IMDB_TOP_LEVEL = "aclImdb"
KNOWN_SIZES = {IMDB_URL: 84_125_825}
SPLITS = ("train", "test")
LABEL_NAMES = ("neg", "pos")  # index = label: 0 negative, 1 positive
_MEMBER = re.compile(r"^(?:[^/]+/)?(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_UNLABELED = re.compile(r"^(?:[^/]+/)?train/unsup/(\d+)_\d+\.txt$")

PathLike = Union[str, Path]


class ReviewData(NamedTuple):
    """One split: ``texts``, ``labels`` (indices into ``class_names``; IMDB: 0 negative, 1 positive),
    ``ratings`` (IMDB's 1-10, or None)."""

    texts: List[str]
    labels: List[int]
    ratings: Optional[List[int]] = None
    class_names: Tuple[str, ...] = IMDB_CLASS_NAMES

    def select(self, indices: Sequence[int]) -> "ReviewData":
        """The reviews at ``indices``, in that order."""
        ratings = [self.ratings[i] for i in indices] if self.ratings is not None else None
        return ReviewData([self.texts[i] for i in indices], [self.labels[i] for i in indices], ratings,
                          self.class_names)


def download_imdb(
    dest_dir: PathLike,
    url: str = IMDB_URL,
    expected_sha256: Optional[str] = None,
    expected_size: Optional[int] = None,
    progress: bool = True,
) -> Path:
    """Download and extract IMDB into ``dest_dir``; return the ``aclImdb`` folder.

    Idempotent: an existing tree is returned as is and an existing archive is not
    downloaded again. Extraction happens in a temporary folder that is renamed into
    place at the end, so an interrupted run leaves no half-extracted tree.
    """
    dest = Path(dest_dir)
    tree = dest / IMDB_TOP_LEVEL
    if _is_tree(tree):
        return tree
    archive = dest / IMDB_ARCHIVE_NAME
    if not archive.is_file():
        size = expected_size if expected_size is not None else KNOWN_SIZES.get(url)
        download_file(url, archive, size, expected_sha256, progress=progress)
    return extract_tar_atomically(archive, dest, IMDB_TOP_LEVEL)


def _is_tree(root: Path, complete: bool = True) -> bool:
    """Whether ``root`` holds the split folders: all of them, or (``complete=False``) any."""
    found = [all((root / split / label).is_dir() for label in LABEL_NAMES) for split in SPLITS]
    return all(found) if complete else any(found)


def find_imdb_source(data_dir: PathLike) -> Optional[Tuple[str, Path]]:
    """Locate loadable data under ``data_dir``: ("tree"|"archive"|"table", path), or None."""
    root = Path(data_dir)
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz")):
        return "archive", root
    for candidate in (root / IMDB_TOP_LEVEL, root):
        if _is_tree(candidate, complete=False):
            return "tree", candidate
    if (root / IMDB_ARCHIVE_NAME).is_file():
        return "archive", root / IMDB_ARCHIVE_NAME
    if find_split_files(root) is not None:
        return "table", root
    return None


def load_imdb(data_dir: PathLike, split: str = "train") -> ReviewData:
    """Load one split (``"train"`` or ``"test"``) from whatever ``data_dir`` holds."""
    return load_imdb_splits(data_dir, (split,))[split]


def load_imdb_splits(data_dir: PathLike, splits: Iterable[str] = SPLITS) -> Dict[str, ReviewData]:
    """Load several splits at once (one pass over an archive instead of one per split)."""
    splits = tuple(splits)
    for split in splits:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    source = _require_source(data_dir)
    kind, path = source
    if kind == "archive":
        data = _read_archive(path, splits)
    elif kind == "tree":
        data = {split: _read_tree(path, split) for split in splits}
    else:
        from src.data.loaders import DataSource, load_splits  # loaders builds on this module

        train, _, test = load_splits(DataSource(str(path)), download=False)
        data = {split: {"train": train, "test": test}[split] for split in splits}
    for split, reviews in data.items():
        _check_split(reviews, split, path)
    return data


def _require_source(data_dir: PathLike) -> Tuple[str, Path]:
    root = Path(data_dir)
    if not root.exists():
        raise DataError(
            f"data directory {root} does not exist; pass --data-dir with the folder that holds "
            f"{IMDB_ARCHIVE_NAME} or aclImdb/, or let the trainer download it there"
        )
    source = find_imdb_source(root)
    if source is None:
        raise DataError(no_data_message(root))
    return source


def no_data_message(root: Path) -> str:
    """What was looked for in ``root``."""
    return (f"{root} holds no IMDB data: expected aclImdb/{{train,test}}/{{pos,neg}}/*.txt, "
            f"{IMDB_ARCHIVE_NAME}, or your own train and test files (.csv, .tsv, .jsonl or .parquet) with "
            "text and label columns")


def _check_split(reviews: ReviewData, split: str, where: Path) -> None:
    if not reviews.texts:
        raise DataError(f"the {split} split in {where} holds no reviews; check the data folder")
    present = set(reviews.labels)
    if len(present) < 2:
        only = reviews.class_names[present.pop()]
        raise DataError(
            f"the {split} split in {where} holds only '{only}' reviews; a classifier needs "
            "examples of at least two classes"
        )


def _sorted_reviews(rows: List[Tuple[int, int, int, str]]) -> ReviewData:
    """Order by (label, id) so every source yields the same order."""
    rows.sort(key=lambda row: (row[0], row[1]))
    return ReviewData([r[3] for r in rows], [r[0] for r in rows], [r[2] for r in rows])


def _read_tree(root: Path, split: str) -> ReviewData:
    rows: List[Tuple[int, int, int, str]] = []
    for label, name in enumerate(LABEL_NAMES):
        folder = root / split / name
        if not folder.is_dir():
            raise DataError(f"{folder} is missing; the {split} split needs pos/ and neg/ folders")
        for path in folder.iterdir():
            match = _MEMBER.match(f"{split}/{name}/{path.name}")
            if match is None:
                continue
            text = _read_review(path)
            rows.append((label, int(match.group(3)), int(match.group(4)), text))
    return _sorted_reviews(rows)


def _read_archive(archive: Path, splits: Tuple[str, ...]) -> Dict[str, ReviewData]:
    rows: Dict[str, List[Tuple[int, int, int, str]]] = {split: [] for split in splits}
    for match, text in _archive_texts(archive, _MEMBER):
        if match.group(1) in rows:
            label = LABEL_NAMES.index(match.group(2))
            rows[match.group(1)].append((label, int(match.group(3)), int(match.group(4)), text))
    return {split: _sorted_reviews(found) for split, found in rows.items()}


def _archive_texts(archive: Path, pattern: "re.Pattern[str]") -> Iterator[Tuple["re.Match[str]", str]]:
    """``(match, cleaned text)`` of every file in ``archive`` whose name matches ``pattern``; each is checked
    before it is read (a compressed archive can unpack to more than any memory)."""
    room, taken = available_memory(), 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                match = pattern.match(member.name)
                if match is not None and member.isfile():
                    _check_review_size(member.size, f"{archive}:{member.name}")
                    taken += member.size
                    if room is not None and taken > room:
                        raise DataError(f"{archive}'s reviews come to more than the {room / 1e6:,.0f} MB of memory "
                                        f"available; this is not the IMDB data set: download {IMDB_ARCHIVE_NAME} "
                                        "again")
                    raw = tar.extractfile(member).read()
                    yield match, clean_text(decode_text(raw, f"{archive}:{member.name}"))
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as err:
        raise DataError(
            f"{archive} is not a readable IMDB archive ({err}); download {IMDB_ARCHIVE_NAME} again"
        ) from None


def _check_review_size(size: int, where: str) -> None:
    """Refuse, before reading it, a review file longer than a text may be."""
    if size > MAX_FIELD_BYTES:
        raise DataError(f"{where} is {size:,} bytes, more than the {MAX_FIELD_BYTES:,} a review may have; this "
                        f"is not the IMDB data set: download {IMDB_ARCHIVE_NAME} again or remove the file")


def _read_review(path: Path) -> str:
    _check_review_size(path.stat().st_size, str(path))
    return clean_text(decode_text(path.read_bytes(), str(path)))


def load_unlabeled_reviews(data_dir: PathLike) -> List[str]:
    """The unlabeled reviews of ``train/unsup`` (50,000 in IMDB), in id order.

    Used for language-model pretraining. CSV data and trees without ``unsup/`` have none: [].
    """
    kind, path = _require_source(data_dir)
    if kind == "archive":
        found = [(int(match.group(1)), text) for match, text in _archive_texts(path, _UNLABELED)]
    elif kind == "tree" and (path / "train" / "unsup").is_dir():
        files = ((_UNLABELED.match(f"train/unsup/{file.name}"), file) for file in (path / "train" / "unsup").iterdir())
        found = [(int(match.group(1)), _read_review(file)) for match, file in files if match is not None]
    else:
        found = []
    return [text for _, text in sorted(found)]

"""GloVe word vectors: download, extraction, fast parsing, a binary cache, and model initialisation.

Files come from the official site (``https://nlp.stanford.edu/data``) unless another
base URL is given (argument ``base_url`` or the ``LSTM_SENTIMENT_GLOVE_URL``
environment variable, for mirrors and tests). Anything already in ``cache_dir``
under its official name is used without touching the network.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple, Union

import numpy as np
import torch
from torch import nn

from src.config import GLOVE_VARIANTS, check_glove_variant, parse_glove_dim
from src.exceptions import DataError
from src.models.lstm_model import check_vocabulary_fits
from src.utils.download import download_file
from src.utils.io import atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

GLOVE_BASE_URL = "https://nlp.stanford.edu/data"
GLOVE_URL_ENV = "LSTM_SENTIMENT_GLOVE_URL"
OOV_SAMPLE_SIZE = 20
WHOLE_READ_BYTES = 1_200_000_000  # all 6B files (300d: 1.04 GB) at once; 42B and 840B in chunks
CHUNK_ROWS = 200_000

PathLike = Union[str, Path]


def member_name(corpus: str, dimension: str) -> str:
    return f"glove.{corpus}.{dimension}.txt"


class GloVeLoader:
    """Finds, downloads, extracts and parses GloVe files, keeping everything in ``cache_dir``."""

    def __init__(self, cache_dir: PathLike = "data/glove", base_url: Optional[str] = None, progress: bool = True):
        self.cache_dir = Path(cache_dir)
        self.base_url = (base_url or os.environ.get(GLOVE_URL_ENV) or GLOVE_BASE_URL).rstrip("/")
        self.progress = progress

    def download_glove(self, corpus: str = "6B", dimension: str = "300d") -> Path:
        """Path of ``glove.<corpus>.<dimension>.txt``, downloading and extracting it if needed."""
        check_glove_variant(corpus, dimension)
        member = member_name(corpus, dimension)
        target = self.cache_dir / member
        if target.is_file():
            return target
        archive = self.cache_dir / str(GLOVE_VARIANTS[corpus]["archive"])
        if not archive.is_file():
            download_file(f"{self.base_url}/{archive.name}", archive, progress=self.progress)
        extract_member(archive, member, target)
        return target

    def load_glove_embeddings(self, path: PathLike, vocab: Optional[Iterable[str]] = None
                              ) -> Tuple[Dict[str, np.ndarray], int]:
        """``({word: float32 vector}, dim)``; with ``vocab``, only those words are kept."""
        words, matrix = self.load_glove_matrix(path, vocab)
        return dict(zip(words, matrix)), matrix.shape[1]

    def load_glove_matrix(self, path: PathLike, vocab: Optional[Iterable[str]] = None
                          ) -> Tuple[List[str], np.ndarray]:
        """``(words, matrix [n, dim] float32)``, from the binary cache when this file and
        vocabulary were parsed before."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"GloVe file {path} does not exist")
        wanted = set(vocab) if vocab is not None else None
        cache = self._cache_paths(path, wanted)
        cached = _read_cache(*cache)
        if cached is not None:
            return cached
        words, matrix, skipped = parse_glove_file(path, wanted)
        if skipped:
            logger.warning("skipped %d malformed lines in %s", skipped, path)
        _write_cache(cache[0], cache[1], words, matrix)
        return words, matrix

    def _cache_paths(self, path: Path, wanted: Optional[Set[str]]) -> Tuple[Path, Path]:
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        key.update("\n".join(sorted(wanted)).encode() if wanted is not None else b"<all>")
        stem = f"{path.stem}-{key.hexdigest()[:16]}"
        folder = self.cache_dir / "cache"
        return folder / f"{stem}.npy", folder / f"{stem}.words.json"


def extract_member(archive: Path, member: str, target: Path) -> None:
    """Extract one member of a zip to ``target`` atomically (never a truncated file there)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = bundle.namelist()
            if member not in names:
                raise DataError(f"{archive} has no member {member} (it holds {', '.join(names) or 'nothing'}); "
                                "download the archive that contains it or pick another --glove-dim")
            with bundle.open(member) as source:
                _copy_to(source, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        archive.unlink(missing_ok=True)
        raise DataError(f"{archive} is not a readable zip archive ({err}); it was removed, run again "
                        "to download it afresh") from None


def _copy_to(source, target: Path) -> None:
    """Stream ``source`` into ``target`` atomically; a failed write (disk full) keeps the archive."""
    try:
        with atomic_write(target, "wb") as out:
            while chunk := source.read(1 << 22):
                out.write(chunk)
    except OSError as err:
        raise DataError(f"could not write {target} ({err.strerror or err}); free some space or choose "
                        "another --glove-cache-dir") from None


def _split_line(line: str, dim: int) -> Optional[Tuple[str, str]]:
    """``(word, numbers)`` of one line; the word may contain spaces (840B). None if malformed."""
    word, _, numbers = line.partition(" ")
    if numbers.count(" ") == dim - 1:
        return word, numbers
    parts = line.rstrip().rsplit(" ", dim)
    if len(parts) != dim + 1 or not parts[0]:
        return None
    return parts[0], " ".join(parts[1:])


def _infer_dim(path: Path) -> int:
    """The most common number of values on the file's first 100 lines."""
    blocks = _line_blocks(path, 1 << 16)
    try:
        lines = next(blocks, [])
    finally:
        blocks.close()
    counts = [line.rstrip().count(" ") for line in lines[:100] if line.strip()]
    if not counts:
        raise DataError(f"GloVe file {path} is empty")
    return max(set(counts), key=counts.count)


def _line_blocks(path: Path, block_bytes: int):
    """Lists of lines, about ``block_bytes`` of text each, so memory holds one block at a time."""
    try:
        with open(path, encoding="utf-8", newline="\n") as handle:
            while True:
                block = handle.readlines(block_bytes)
                if not block:
                    return
                yield block
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason}); is it a GloVe .txt file?") from None


def _parse_block(lines: List[str], dim: int, wanted: Optional[Set[str]]) -> Tuple[List[str], np.ndarray, int]:
    words, numbers, malformed = [], [], 0
    for line in lines:
        if not line.strip():
            continue
        split = _split_line(line.rstrip("\r\n"), dim)
        if split is None:
            malformed += 1
        elif wanted is None or split[0] in wanted:
            words.append(split[0])
            numbers.append(split[1])
    matrix, bad_rows = _parse_numbers(numbers, dim)
    if bad_rows:
        words = [w for i, w in enumerate(words) if i not in bad_rows]
    return words, matrix, malformed + len(bad_rows)


def parse_glove_file(path: Path, wanted: Optional[Set[str]] = None,
                     block_bytes: int = 1 << 26) -> Tuple[List[str], np.ndarray, int]:
    """Parse a GloVe text file: ``(words, matrix, malformed_line_count)``.

    A well-formed file (every line a word and ``dim`` numbers, one space apart) is
    read by pandas' C tokenizer and float parser, about 5x faster than a ``split()``
    loop. Any other file (840B's words with spaces, short or garbled lines) is
    parsed line by line instead, keeping every good line and counting the bad ones.
    With ``wanted``, other words are dropped, so memory holds only what is kept.
    """
    dim = _infer_dim(path)
    rows_per_chunk = None if path.stat().st_size <= WHOLE_READ_BYTES else CHUNK_ROWS
    fast = _parse_well_formed(path, dim, wanted, rows_per_chunk)
    if fast is not None:
        return fast[0], fast[1], 0
    logger.info("%s is not one word and %d numbers on every line; parsing it line by line", path, dim)
    return _parse_line_by_line(path, dim, wanted, block_bytes)


def _frames(path: Path, dim: int, rows_per_chunk: Optional[int]):
    """DataFrames [rows, 1 + dim] (the word, then its vector): the whole file in one, which
    is a third faster than chunks, or ``rows_per_chunk`` rows each, to bound memory."""
    import pandas as pd

    options = dict(sep=" ", header=None, quoting=csv.QUOTE_NONE, na_filter=False, engine="c", encoding="utf-8",
                   dtype={0: object, **{column: np.float32 for column in range(1, dim + 1)}})
    if rows_per_chunk is None:
        yield pd.read_csv(path, **options)
        return
    with pd.read_csv(path, chunksize=rows_per_chunk, **options) as chunks:
        yield from chunks


def _parse_well_formed(path: Path, dim: int, wanted: Optional[Set[str]],
                       rows_per_chunk: Optional[int]) -> Optional[Tuple[List[str], np.ndarray]]:
    """``(words, matrix)``, or None if some line is not a word and ``dim`` numbers."""
    words: List[str] = []
    matrices: List[np.ndarray] = []
    try:
        for frame in _frames(path, dim, rows_per_chunk):
            if frame.shape[1] != dim + 1:
                return None
            if wanted is not None:
                frame = frame[frame[0].isin(wanted)]
            words.extend(frame[0].tolist())
            matrices.append(frame.iloc[:, 1:].to_numpy(dtype=np.float32))
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason}); is it a GloVe .txt file?") from None
    except ValueError:  # pandas' ParserError (more fields) is one too, as are fewer fields and non-numbers
        return None
    return words, np.concatenate(matrices) if len(matrices) > 1 else matrices[0]


def _parse_line_by_line(path: Path, dim: int, wanted: Optional[Set[str]],
                        block_bytes: int) -> Tuple[List[str], np.ndarray, int]:
    """The tolerant parser: lines split in Python, each block's numbers parsed by one NumPy call
    (and row by row only when that fails, to find the bad rows)."""
    words: List[str] = []
    matrices: List[np.ndarray] = []
    malformed = 0
    for lines in _line_blocks(path, block_bytes):
        block_words, block_matrix, block_malformed = _parse_block(lines, dim, wanted)
        words.extend(block_words)
        matrices.append(block_matrix)
        malformed += block_malformed
    return words, np.concatenate(matrices) if len(matrices) > 1 else matrices[0], malformed


def _parse_numbers(rows: List[str], dim: int) -> Tuple[np.ndarray, Set[int]]:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32), set()
    try:
        matrix = np.loadtxt(rows, dtype=np.float32, delimiter=" ", comments=None, quotechar=None, ndmin=2)
        if matrix.shape[1] == dim:
            return matrix, set()
    except ValueError:
        pass
    good, bad = [], set()
    for index, row in enumerate(rows):
        try:
            vector = np.array(row.split(" "), dtype=np.float32)
        except ValueError:
            vector = None
        if vector is None or vector.shape != (dim,):
            bad.add(index)
        else:
            good.append(vector)
    return (np.stack(good) if good else np.zeros((0, dim), dtype=np.float32)), bad


def _read_cache(matrix_path: Path, words_path: Path) -> Optional[Tuple[List[str], np.ndarray]]:
    if not (matrix_path.is_file() and words_path.is_file()):
        return None
    try:
        words = json.loads(words_path.read_text(encoding="utf-8"))
        matrix = np.load(matrix_path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return (words, matrix) if len(words) == len(matrix) else None


def _write_cache(matrix_path: Path, words_path: Path, words: List[str], matrix: np.ndarray) -> None:
    try:
        with atomic_write(matrix_path, "wb") as handle:
            np.save(handle, matrix, allow_pickle=False)
        atomic_write_json(words_path, words)
    except OSError as err:
        logger.warning("could not write the GloVe cache in %s (%s); the next load parses the file again",
                       matrix_path.parent, err)


def initialize_model_with_glove(model: nn.Module, preprocessor, corpus: str = "6B", dimension: str = "300d",
                                freeze_embeddings: bool = False, cache_dir: PathLike = "data/glove",
                                base_url: Optional[str] = None, progress: bool = True) -> Dict[str, object]:
    """Copy GloVe vectors into ``model.embedding`` for every vocabulary word found.

    Each word is looked up as written, then lower-cased. ``<pad>`` stays zero; words
    without a vector get random normal vectors with the GloVe vectors' own spread.
    An embedding wider than the vectors keeps them in its first columns and starts
    the others, learned from scratch, as that same noise. Returns coverage statistics.
    """
    check_glove_variant(corpus, dimension)
    embedding: nn.Embedding = model.embedding
    check_vocabulary_fits(preprocessor.vocab_size, embedding.num_embeddings)  # before a download and a parse
    expected = parse_glove_dim(dimension)
    if embedding.embedding_dim < expected:
        raise ValueError(f"GloVe {corpus} {dimension} vectors have {expected} dimensions but the model's "
                         f"embedding has only {embedding.embedding_dim}; use --embedding-dim {expected} or more, "
                         "or another --glove-dim")
    loader = GloVeLoader(cache_dir, base_url=base_url, progress=progress)
    path = loader.download_glove(corpus, dimension)
    itos = preprocessor.itos
    words, matrix = loader.load_glove_matrix(path, set(itos) | {w.lower() for w in itos})
    weights, found, oov = _embedding_matrix(itos, words, matrix, preprocessor.pad_idx, embedding.embedding_dim)
    with torch.no_grad():
        embedding.weight.copy_(torch.from_numpy(weights))
    embedding.weight.requires_grad_(not freeze_embeddings)
    real_words = len(itos) - 2
    stats = {"vocab_size": len(itos), "found": found, "coverage": found / real_words if real_words else 0.0,
             "oov_count": real_words - found, "oov_sample": oov[:OOV_SAMPLE_SIZE], "embedding_dim": expected,
             "learned_dims": embedding.embedding_dim - expected,
             "source": str(path), "frozen": freeze_embeddings}
    logger.info("GloVe %s %s: %d of %d words found (%.1f%% coverage)", corpus, dimension, found, real_words,
                100 * stats["coverage"])
    return stats


def _embedding_matrix(itos: List[str], words: List[str], matrix: np.ndarray, pad_idx: int, width: int):
    """[vocabulary, width] rows for every id: GloVe in the first columns where found, scaled noise
    elsewhere, zeros for padding."""
    index = {word: row for row, word in enumerate(words)}
    scale = float(matrix.std()) if matrix.size else 0.1
    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, scale, size=(len(itos), width)).astype(np.float32)
    glove_columns = matrix.shape[1]
    found, oov = 0, []
    for token_id, word in enumerate(itos):
        row = index.get(word, index.get(word.lower()))
        if token_id < 2:  # <pad>, <unk>: specials, never looked up
            continue
        if row is None:
            oov.append(word)
        else:
            weights[token_id, :glove_columns] = matrix[row]
            found += 1
    weights[pad_idx] = 0.0
    return weights, found, oov

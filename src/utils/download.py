"""Streaming HTTP(S) downloads with resume, progress bar and verification.

The file grows under ``<name>.part`` and is renamed to its final name only after
its size and checksum check out, so a final name never holds a truncated file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from src.exceptions import DownloadError
from src.utils.io import folders_removed_on_failure

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float, dest: Path):
    request = urllib.request.Request(url, headers={"User-Agent": "lstm-sentiment"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is already complete
            return None
        raise DownloadError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"cannot reach {url} ({reason}); check the network, or download the file yourself and put it "
            f"at {dest}"
        ) from None


def _stream(response, part: Path, offset: int, total: Optional[int], progress: bool) -> None:
    mode = "ab" if offset else "wb"
    with open(part, mode) as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True,
        desc=part.name[: -len(".part")], disable=not progress,
    ) as bar:
        while True:
            chunk = response.read(CHUNK_SIZE)
            if not chunk:
                break
            out.write(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())


def _fetch_into(url: str, dest: Path, part: Path, progress: bool, timeout: float) -> Optional[int]:
    """Append the rest of ``url`` to ``part`` (which becomes ``dest``), restarting if the server ignores Range.

    Returns the full size the server announced, or None if it did not say.
    """
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout, dest)
    if response is None:
        return offset
    with response:
        if offset and response.status != 206:
            logger.info("server does not resume downloads; starting %s again", part.name)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if offset:
            logger.info("resuming %s at byte %d", part.name, offset)
        try:
            _stream(response, part, offset, total, progress)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"download of {url} was interrupted ({err}); run again to resume") from None
    return total


def verify_file(path: Path, expected_size: Optional[int], expected_sha256: Optional[str]) -> None:
    """Raise DownloadError if the file's size or SHA-256 differs from what is expected."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"{path} has {size} bytes, expected {expected_size}")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256.lower():
        raise DownloadError(f"{path} does not match its expected SHA-256 checksum")


def download_file(
    url: str,
    dest: Path,
    expected_size: Optional[int] = None,
    expected_sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part`` if present) and verify it."""
    dest = Path(dest)
    with folders_removed_on_failure(dest.parent):  # a mistyped --data-dir that cannot be filled is not left
        dest.parent.mkdir(parents=True, exist_ok=True)
        return _download(url, dest, expected_size, expected_sha256, progress, timeout)


def _download(url: str, dest: Path, expected_size: Optional[int], expected_sha256: Optional[str],
              progress: bool, timeout: float) -> Path:
    part = dest.with_name(dest.name + ".part")
    if expected_size is not None and part.exists() and part.stat().st_size > expected_size:
        part.unlink()
    logger.info("downloading %s to %s", url, dest)
    announced = _fetch_into(url, dest, part, progress, timeout)
    received = part.stat().st_size
    if announced is not None and received < announced:
        raise DownloadError(f"download of {url} stopped at {received} of {announced} bytes; "
                            "run again to resume it")
    try:
        verify_file(part, expected_size, expected_sha256)
    except DownloadError as err:
        part.unlink()
        raise DownloadError(f"{err}; the damaged download was removed, run again to retry") from None
    os.replace(part, dest)
    return dest

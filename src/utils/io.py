"""Atomic writes of files and folders: a reader sees the old one or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import errno
import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp and mkdtemp create files and folders for their owner only; what we write gets the usual modes
FILE_MODE = 0o666 & ~_current_umask()
DIRECTORY_MODE = 0o777 & ~_current_umask()


def staging_directory(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A new hidden folder in ``parent`` to build a tree in before it is renamed into place, with the mode a
    folder made by ``mkdir`` gets (mkdtemp's 0700 would keep a model from another user, a service say)."""
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(staging, DIRECTORY_MODE)
    return staging


def _fsync_directory(directory: Path) -> None:
    """Persist a rename; some platforms cannot open directories, which is harmless."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    If the body raises, the temporary file is removed and ``path`` keeps its old content.
    A ``path`` that is a link, a device or a FIFO (``/dev/stdout``, ``/dev/null``, a pipe)
    is written in place instead: replacing it would put a regular file where it was.
    """
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(target))
        with open(target, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    at_cwd, rename_exchange = -100, 2
    return renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0


@contextlib.contextmanager
def staged_files(directory: Path) -> Iterator[Path]:
    """A folder to write a set of files into; once the block ends without error they are moved into
    ``directory`` (renames, which need no room), so a full disk midway leaves every old file as it was."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(directory, ".staged.", ".tmp")
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.replace(path, directory / path.name)
        _fsync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(new: Path, target: Path) -> None:
    """Put the folder ``new`` where ``target`` is, removing the old ``target``.

    Where the system can swap two folders atomically (Linux), a reader sees the old
    folder or the new one; elsewhere ``target`` is missing between two renames."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)
    else:
        backup = target.with_name(f".{target.name}.old.tmp")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
        os.replace(new, target)
        shutil.rmtree(backup)
    _fsync_directory(target.parent)


def missing_folders(path: PathLike) -> List[Path]:
    """The folders of ``path`` (itself and its parents, deepest first) that do not exist yet: those a command
    that goes on to make ``path`` makes."""
    path = Path(path)
    return [folder for folder in (path, *path.parents) if not folder.exists()]


@contextlib.contextmanager
def removed_on_failure(folders: Sequence[Path], leftovers: Sequence[str] = ()) -> Iterator[None]:
    """Run the block; if it fails, remove ``folders`` (``missing_folders``' list, taken before they were made)
    as long as they hold nothing but the files named in ``leftovers`` (in the deepest: a failed run's own lock
    and log), so that a command that fails on a mistyped path leaves no empty folder behind."""
    try:
        yield
    except BaseException:
        _remove_if_bare(folders, set(leftovers))
        raise


@contextlib.contextmanager
def folders_removed_on_failure(path: PathLike, leftovers: Sequence[str] = ()) -> Iterator[None]:
    """``removed_on_failure`` for the folders of ``path`` missing when the block starts."""
    with removed_on_failure(missing_folders(path), leftovers):
        yield


def _remove_if_bare(folders: Sequence[Path], leftovers: set) -> None:
    """Remove each folder (deepest first) that holds only ``leftovers`` files; stop at one that holds more."""
    for folder in folders:
        if not folder.is_dir():
            continue
        entries = list(folder.iterdir())
        if any(entry.name not in leftovers or not entry.is_file() for entry in entries):
            return
        try:
            for entry in entries:
                entry.unlink()
            folder.rmdir()
        except OSError:
            return
        leftovers = set()  # a parent keeps anything it holds

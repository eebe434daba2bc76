"""Safe archive extraction: refuse members that would land outside the target."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from src.exceptions import DataError, UnsafeArchiveError


def check_member_path(name: str, archive: Path) -> None:
    """Refuse absolute names and names that climb out with ``..``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    has_drive = bool(pure.parts) and pure.parts[0].endswith(":")
    if pure.is_absolute() or ".." in pure.parts or has_drive:
        raise UnsafeArchiveError(f"{archive} holds an unsafe member {name!r}; refusing to extract it")


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    check_member_path(member.name, archive)
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname.replace("\\", "/"))
        base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
        resolved = os.path.normpath(str(base / link))
        if link.is_absolute() or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"{archive} holds a link {member.name!r} -> {member.linkname!r} that points "
                "outside the target directory; refusing to extract it"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive} holds a special file {member.name!r}; refusing to extract it")


def extract_tar_atomically(archive: Path, dest_dir: Path, top_level: str) -> Path:
    """Extract ``archive`` and move its ``top_level`` folder into ``dest_dir`` in one rename.

    Members are checked one by one as they stream; any unsafe member aborts the
    extraction, and the partial tree (in a temporary folder) is removed, so
    ``dest_dir / top_level`` either appears complete or not at all.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{top_level}.partial-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    _check_tar_member(member, archive)
                    _extract_member(tar, member, staging)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"{archive} is not a readable tar archive ({err}); delete it and download it again") from None
        extracted = staging / top_level
        if not extracted.is_dir():
            raise DataError(f"{archive} has no top-level folder {top_level!r}; is it the right archive?")
        final = dest_dir / top_level
        if final.exists():
            raise DataError(f"{final} already exists but is not a complete data set; move it away and run again")
        os.replace(extracted, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, staging, filter="data")
    elif member.issym() or member.islnk():
        # Python without extraction filters: chains of links can escape even when each link
        # looks safe on its own, so links are refused (the data sets we read have none)
        raise UnsafeArchiveError(f"{tar.name} holds a link {member.name!r}; refusing to extract links")
    else:
        tar.extract(member, staging)

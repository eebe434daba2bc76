"""download_imdb against the real archive served from a loopback HTTP server."""

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from src.data import download_imdb, load_imdb
from src.data import imdb as imdb_module
from src.exceptions import DownloadError, UnsafeArchiveError
from src.utils import archive as archive_module
from src.utils.download import download_file, sha256_of
from tests.helpers import IMDB_ARCHIVE, IMDB_SHA256, FileServer

NAME = "aclImdb_v1.tar.gz"


@pytest.fixture(scope="module")
def served(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("www")
    (root / NAME).symlink_to(IMDB_ARCHIVE)
    return root


def test_the_real_archive_downloads_and_verifies(served, tmp_path):
    with FileServer(served) as server:
        path = download_file(f"{server.url}/{NAME}", tmp_path / NAME, expected_size=IMDB_ARCHIVE.stat().st_size,
                             expected_sha256=IMDB_SHA256, progress=False)
    assert path.read_bytes() == IMDB_ARCHIVE.read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_download_extracts_and_is_idempotent(imdb_subset_archive, tmp_path):
    """The whole of download_imdb on a real-layout archive of 4,000 real reviews."""
    target = tmp_path / "data"
    with FileServer(imdb_subset_archive.parent) as server:
        url = f"{server.url}/{NAME}"
        tree = download_imdb(target, url=url, expected_sha256=sha256_of(imdb_subset_archive), progress=False)
        assert tree == target / "aclImdb"
        assert len(server.requests) == 1
        again = download_imdb(target, url=url, progress=False)
        assert again == tree and len(server.requests) == 1  # nothing fetched the second time
    assert sorted(p.name for p in target.iterdir()) == ["aclImdb", NAME]
    test = load_imdb(target, "test")
    assert len(test.texts) == 2000 and sum(test.labels) == 1000


def test_wrong_checksum_is_refused_and_nothing_is_kept(served, tmp_path):
    with FileServer(served) as server:
        with pytest.raises(DownloadError, match="SHA-256"):
            download_imdb(tmp_path, url=f"{server.url}/{NAME}", expected_sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_not_kept_under_the_final_name(served, tmp_path):
    with FileServer(served, truncate_at={f"/{NAME}": 1000}) as server:
        with pytest.raises(DownloadError, match="run again to resume"):
            download_imdb(tmp_path, url=f"{server.url}/{NAME}", expected_sha256=IMDB_SHA256, progress=False)
    assert not (tmp_path / NAME).exists() and not (tmp_path / "aclImdb").exists()
    assert (tmp_path / f"{NAME}.part").stat().st_size == 1000  # kept, to resume from


def test_partial_download_resumes_with_range(served, tmp_path):
    (tmp_path / f"{NAME}.part").write_bytes(IMDB_ARCHIVE.read_bytes()[:5_000_000])
    with FileServer(served) as server:
        path = download_file(f"{server.url}/{NAME}", tmp_path / NAME, expected_sha256=IMDB_SHA256, progress=False)
        assert server.requests == [(f"/{NAME}", "bytes=5000000-")]
    assert path.read_bytes() == IMDB_ARCHIVE.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_missing_file_on_server_gives_clear_error(served, tmp_path):
    with FileServer(served) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_imdb(tmp_path, url=f"{server.url}/nothing.tar.gz", progress=False)


def test_unreachable_server_gives_clear_error_that_says_where_to_put_the_file(tmp_path):
    """The message alone (a Python caller may see no log) names the path the file belongs at."""
    with pytest.raises(DownloadError, match="cannot reach") as raised:
        download_imdb(tmp_path, url="http://127.0.0.1:9/aclImdb_v1.tar.gz", progress=False)
    assert str(raised.value).endswith(f"put it at {tmp_path / NAME}")


def test_a_failed_download_into_a_new_folder_leaves_no_folder(tmp_path):
    """A mistyped --data-dir that cannot be filled is not left behind, nor its new parents; a folder that
    was there stays."""
    with pytest.raises(DownloadError, match="cannot reach"):
        download_imdb(tmp_path / "typo" / "imdbb", url="http://127.0.0.1:9/aclImdb_v1.tar.gz", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_extraction_leaves_no_tree(tmp_path, monkeypatch, real_data):
    shutil.copy(IMDB_ARCHIVE, tmp_path / NAME)
    calls = {"n": 0}
    original = archive_module._extract_member

    def fail_midway(tar, member, staging):
        calls["n"] += 1
        if calls["n"] == 500:
            raise KeyboardInterrupt
        original(tar, member, staging)

    monkeypatch.setattr(archive_module, "_extract_member", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        download_imdb(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("aclImdb/README")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return path


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("aclImdb/../../evil.txt"),
    tarfile.TarInfo("/tmp/evil.txt"),
    _symlink("aclImdb/link", "../../etc/passwd"),
    _symlink("aclImdb/abs", "/etc/passwd"),
    _hardlink("aclImdb/hard", "../outside"),
], ids=["dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"])
def test_malicious_archive_is_refused(tmp_path, member):
    target = tmp_path / "target"
    target.mkdir()
    _tar_with(target / NAME, member)
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        download_imdb(target)
    assert sorted(p.name for p in target.iterdir()) == [NAME]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_archive_without_imdb_folder_is_rejected(tmp_path):
    with tarfile.open(tmp_path / NAME, "w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(imdb_module.DataError, match="right archive"):
        download_imdb(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]

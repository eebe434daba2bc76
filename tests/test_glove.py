"""GloVe download, extraction and parsing against the real glove.6B.zip on a loopback server."""

import zipfile

import numpy as np
import pytest

from src.exceptions import DataError, DownloadError
from src.training import GloVeLoader
import src.training.glove_loader as glove_module
from src.training.glove_loader import GLOVE_URL_ENV, parse_glove_file
from tests.helpers import GLOVE_ZIP, FileServer

ZIP = "glove.6B.zip"


@pytest.fixture(scope="module")
def served(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("www")
    (root / ZIP).symlink_to(GLOVE_ZIP)
    (root / "glove.840B.300d.zip").write_bytes(b"PK\x03\x04 this is not really a zip archive")
    return root


@pytest.fixture(scope="module")
def glove_50d(served, tmp_path_factory):
    """The 50d file, downloaded and extracted once for the module."""
    cache = tmp_path_factory.mktemp("glove")
    with FileServer(served) as server:
        path = GloVeLoader(cache, base_url=server.url, progress=False).download_glove("6B", "50d")
    return path


def test_download_extract_parse_and_cache_hit(served, tmp_path, monkeypatch):
    with FileServer(served) as server:
        loader = GloVeLoader(tmp_path, base_url=server.url, progress=False)
        path = loader.download_glove("6B", "50d")
        assert path == tmp_path / "glove.6B.50d.txt" and len(server.requests) == 1
        monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("the zip was read again"))
        assert loader.download_glove("6B", "50d") == path
        assert len(server.requests) == 1
    embeddings, dim = loader.load_glove_embeddings(path, vocab={"the", "movie", "zzzznotaword"})
    assert dim == 50 and set(embeddings) == {"the", "movie"}
    assert embeddings["the"][:3].tolist() == pytest.approx([0.418, 0.24968, -0.41242])


def test_base_url_from_environment(served, tmp_path, monkeypatch):
    with FileServer(served) as server:
        monkeypatch.setenv(GLOVE_URL_ENV, server.url)
        GloVeLoader(tmp_path, progress=False).download_glove("6B", "50d")
        assert server.requests[0][0] == f"/{ZIP}"


def test_partial_download_resumes(served, tmp_path):
    (tmp_path / f"{ZIP}.part").write_bytes(GLOVE_ZIP.read_bytes()[:10_000_000])
    with FileServer(served) as server:
        GloVeLoader(tmp_path, base_url=server.url, progress=False).download_glove("6B", "50d")
        assert server.requests == [(f"/{ZIP}", "bytes=10000000-")]
    assert (tmp_path / ZIP).read_bytes() == GLOVE_ZIP.read_bytes()


def test_missing_member_names_it(served, tmp_path):
    with FileServer(served) as server:
        with pytest.raises(DataError, match=r"no member glove\.6B\.300d\.txt .*glove\.6B\.50d\.txt"):
            GloVeLoader(tmp_path, base_url=server.url, progress=False).download_glove("6B", "300d")
    assert not (tmp_path / "glove.6B.300d.txt").exists()


def test_corrupted_zip_is_reported_and_removed(served, tmp_path):
    with FileServer(served) as server:
        with pytest.raises(DataError, match="not a readable zip archive"):
            GloVeLoader(tmp_path, base_url=server.url, progress=False).download_glove("840B", "300d")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_server_404(served, tmp_path):
    with FileServer(served) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            GloVeLoader(tmp_path, base_url=server.url, progress=False).download_glove("42B", "300d")
    assert list(tmp_path.iterdir()) == []


def test_files_already_in_the_cache_need_no_network(tmp_path):
    (tmp_path / "glove.840B.300d.txt").write_text("x " + " ".join(["0.5"] * 300) + "\n")
    loader = GloVeLoader(tmp_path, base_url="http://127.0.0.1:9", progress=False)
    assert loader.download_glove("840B", "300d") == tmp_path / "glove.840B.300d.txt"


@pytest.mark.parametrize("corpus, dimension, message", [
    ("7B", "50d", "choose one of 6B, 42B, 840B"),
    ("42B", "50d", "GloVe 42B comes in 300d, not '50d'"),
])
def test_unknown_variant_lists_the_choices(tmp_path, corpus, dimension, message):
    with pytest.raises(ValueError, match=message):
        GloVeLoader(tmp_path).download_glove(corpus, dimension)


def test_multi_word_tokens_and_malformed_lines(tmp_path):
    path = tmp_path / "glove.tiny.txt"
    path.write_text("the 0.1 0.2 0.3\n"
                    ". . . 1 2 3\n"            # 840B-style token with spaces
                    "at name@domain.com 4 5 6\n"
                    "broken 0.1 0.2\n"          # too few numbers
                    "nan-word 0.1 oops 0.3\n"   # not a number
                    "film -1 -2 -3\n\n", encoding="utf-8")
    words, matrix, skipped = parse_glove_file(path)
    assert words == ["the", ". . .", "at name@domain.com", "film"] and skipped == 2
    assert matrix.dtype == np.float32 and matrix[1].tolist() == [1, 2, 3] and matrix[3].tolist() == [-1, -2, -3]
    in_blocks = parse_glove_file(path, block_bytes=20)  # a few lines per block
    assert in_blocks[0] == words and np.array_equal(in_blocks[1], matrix) and in_blocks[2] == 2
    assert parse_glove_file(path, wanted={"film", ". . ."})[0] == [". . .", "film"]


def test_fast_and_tolerant_parsers_agree_on_real_vectors(glove_50d, tmp_path, monkeypatch):
    """The first 20,000 real lines: pandas' parser (whole and in chunks) equals the line-by-line one."""
    with open(glove_50d, encoding="utf-8") as source:
        head = "".join(next(source) for _ in range(20000))
    path = tmp_path / "glove.head.txt"
    path.write_text(head, encoding="utf-8")
    wanted = {"the", "movie", "film", "good", "#"}
    for keep in (None, wanted):
        tolerant = glove_module._parse_line_by_line(path, 50, keep, block_bytes=1 << 20)
        whole = glove_module._parse_well_formed(path, 50, keep, rows_per_chunk=None)
        chunked = glove_module._parse_well_formed(path, 50, keep, rows_per_chunk=3000)
        for fast in (whole, chunked):
            assert fast[0] == tolerant[0] and np.array_equal(fast[1], tolerant[1])
    assert sorted(whole[0]) == sorted(wanted)  # "#" is a word, not a comment
    assert parse_glove_file(path)[0][:3] == ["the", ",", "."]


@pytest.mark.parametrize("lines, fast", [
    ("the 0.1 0.2 0.3\nnull 1 2 3\r\n007 1 2 3\n\"q 1 2 3\n\nNaN 1e-05 -2.5E+01 3\n", True),
    ("the 0.1 0.2 0.3\n. . . 1 2 3\n", False),   # more fields: 840B's words with spaces
    ("the 0.1 0.2 0.3\nshort 0.1 0.2\n", False),  # fewer fields
    ("the 0.1 0.2 0.3\nword 0.1 nan 0.3\n", False),  # not a number
])
def test_only_well_formed_files_take_the_fast_parser(tmp_path, lines, fast):
    path = tmp_path / "glove.tiny.txt"
    path.write_text(lines, encoding="utf-8")
    result = glove_module._parse_well_formed(path, 3, None, rows_per_chunk=None)
    assert (result is not None) == fast
    if fast:
        assert result[0] == ["the", "null", "007", '"q', "NaN"] and result[1].dtype == np.float32
        assert result[1][-1].tolist() == pytest.approx([1e-05, -25.0, 3.0])


def test_file_that_is_not_text(tmp_path):
    path = tmp_path / "glove.6B.50d.txt"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="not UTF-8 text"):
        parse_glove_file(path)


def test_second_load_comes_from_the_binary_cache(glove_50d, tmp_path, monkeypatch):
    loader = GloVeLoader(tmp_path)
    words, matrix = loader.load_glove_matrix(glove_50d, vocab={"good", "bad", "film"})
    import src.training.glove_loader as module

    def parse_again(*args):
        raise RuntimeError("parsed the text file again")

    monkeypatch.setattr(module, "parse_glove_file", parse_again)
    again_words, again = loader.load_glove_matrix(glove_50d, vocab={"film", "bad", "good"})
    assert again_words == words and np.array_equal(again, matrix)
    with pytest.raises(RuntimeError, match="parsed the text file again"):
        loader.load_glove_matrix(glove_50d, vocab={"other"})  # another vocabulary: another cache entry


def test_full_file_parse(glove_50d, tmp_path):
    words, matrix = GloVeLoader(tmp_path).load_glove_matrix(glove_50d)
    assert len(words) == 400000 and matrix.shape == (400000, 50) and words[0] == "the"


def test_full_disk_while_extracting_keeps_the_archive(served, tmp_path, monkeypatch):
    import errno

    import src.training.glove_loader as module

    with FileServer(served) as server:
        loader = GloVeLoader(tmp_path, base_url=server.url, progress=False)

        def disk_full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(module, "atomic_write", disk_full)
        with pytest.raises(DataError, match="could not write .*No space left"):
            loader.download_glove("6B", "50d")
    assert (tmp_path / ZIP).is_file() and not (tmp_path / "glove.6B.50d.txt").exists()

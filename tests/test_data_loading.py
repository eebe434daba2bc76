"""load_imdb on the real archive, on extracted trees, on CSV files, and on bad input."""

import io
import tarfile

import pytest

from src.data import load_imdb, load_imdb_splits
from src.data import imdb, loaders
from src.exceptions import DataError
from tests.helpers import IMDB_ARCHIVE, SUBSET_IDS, synthetic_reviews, write_imdb_tree


@pytest.fixture(scope="module")
def from_archive(real_data):
    return load_imdb_splits(IMDB_ARCHIVE.parent)


def test_real_archive_read_in_place(from_archive):
    for split in ("train", "test"):
        reviews = from_archive[split]
        assert len(reviews.texts) == 25000
        assert sum(reviews.labels) == 12500
        assert not any("<br" in text.lower() for text in reviews.texts)
        for label, rating in zip(reviews.labels, reviews.ratings):
            assert (rating >= 7) if label == 1 else (rating <= 4)


def test_extracted_tree_gives_the_same_data_as_the_archive(from_archive, imdb_tree):
    # reviews come ordered by (label, id); the tree holds ids 0-999 of each label
    subset = list(range(SUBSET_IDS)) + list(range(12500, 12500 + SUBSET_IDS))
    expected = from_archive["train"].select(subset)
    for root in (imdb_tree, imdb_tree / "aclImdb"):
        train = load_imdb(root, "train")
        assert (train.texts, train.labels, train.ratings) == (expected.texts, expected.labels, expected.ratings)


def test_csv_data(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\n"Loved it, really",positive\nDull.,negative\nok film,positive\n',
                                        encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,label\nfine,positive\nbad,negative\n", encoding="utf-8")
    reviews = load_imdb(tmp_path, "train")
    assert reviews.texts == ["Loved it, really", "Dull.", "ok film"]
    assert reviews.labels == [1, 0, 1] and reviews.class_names == ("negative", "positive")
    assert reviews.ratings is None


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        load_imdb(tmp_path / "nowhere")


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match="holds no IMDB data"):
        load_imdb(tmp_path)


def test_empty_split(tmp_path):
    write_imdb_tree(tmp_path, {"train": {"pos": [], "neg": []}, "test": {"pos": [], "neg": []}})
    with pytest.raises(DataError, match="train split .* holds no reviews"):
        load_imdb(tmp_path, "train")


def test_single_class_split(tmp_path):
    write_imdb_tree(tmp_path, {"train": {"pos": ["good"], "neg": []}, "test": {"pos": [], "neg": []}})
    with pytest.raises(DataError, match="only 'positive' reviews"):
        load_imdb(tmp_path, "train")


def test_non_utf8_review_names_the_file(tmp_path):
    write_imdb_tree(tmp_path, {"train": {"pos": ["good"], "neg": ["bad"]}})
    bad = tmp_path / "aclImdb" / "train" / "neg" / "7_1.txt"
    bad.write_bytes(b"caf\xe9 was awful")
    with pytest.raises(DataError, match=r"7_1\.txt is not valid UTF-8"):
        load_imdb(tmp_path, "train")


def test_csv_without_needed_columns(tmp_path):
    (tmp_path / "train.csv").write_text("review,sentiment\nnice,1\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("review,sentiment\nnice,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no 'text' column \\(its columns: 'review', 'sentiment'\\); name the "
                                        "right one with --text-column"):
        load_imdb(tmp_path, "train")


@pytest.mark.parametrize("bad_line", [2, 6, 15_001])
def test_non_utf8_csv_names_the_line_of_the_bad_byte(tmp_path, bad_line):
    """The reader decodes blocks ahead of the rows it hands out; the message names the bad byte's own line."""
    (tmp_path / "test.csv").write_bytes(b"text,label\nfine,1\n")
    rows = [b"a fine film,1\n"] * (bad_line - 2) + [b"caf\xe9,1\n"] + [b"more,0\n"] * 5000
    (tmp_path / "train.csv").write_bytes(b"text,label\n" + b"".join(rows))
    with pytest.raises(DataError, match=f"train.csv is not valid UTF-8 \\(line {bad_line}\\)"):
        load_imdb(tmp_path, "train")


@pytest.mark.parametrize("start", [
    b"\xef\xbb\xbftext,label\n",  # a byte-order mark, which the decoder drops
    b"text,label\n" + b"a" * ((1 << 20) - 1) + "\u00e9,1\n".encode(),  # the é split between two 1 MB reads
], ids=["byte-order mark", "a character across two reads"])
def test_the_bad_bytes_line_is_found_past_a_byte_order_mark_and_a_split_character(tmp_path, start):
    (tmp_path / "test.csv").write_bytes(b"text,label\nfine,1\n")
    (tmp_path / "train.csv").write_bytes(start + b"good,1\n\xffbad,0\nmore,1\n")
    bad_line = start.count(b"\n") + 2
    with pytest.raises(DataError, match=f"train.csv is not valid UTF-8 \\(line {bad_line}\\)"):
        load_imdb(tmp_path, "train")


@pytest.mark.parametrize("kind", ["archive", "tree"])
def test_a_review_longer_than_a_text_may_be_is_refused_before_it_is_read(tmp_path, monkeypatch, kind):
    """A gzip archive of a few megabytes can unpack to one review of gigabytes: its size is checked first."""
    monkeypatch.setattr(imdb, "MAX_FIELD_BYTES", 100)
    monkeypatch.setattr(imdb, "decode_text", lambda *args: pytest.fail("the review was read"))
    name = "aclImdb/train/pos/0_9.txt"
    if kind == "archive":
        with tarfile.open(tmp_path / "aclImdb_v1.tar.gz", "w:gz") as tar:
            member = tarfile.TarInfo(name)
            member.size = 101
            tar.addfile(member, io.BytesIO(b"x" * 101))
    else:
        for folder in ("train/pos", "train/neg", "test/pos", "test/neg"):
            (tmp_path / "aclImdb" / folder).mkdir(parents=True)
        (tmp_path / name).write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="0_9.txt is 101 bytes, more than the 100 a review may have"):
        load_imdb(tmp_path, "train")


def test_an_archive_whose_reviews_outgrow_the_memory_is_refused_as_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(imdb, "available_memory", lambda: 150)
    with tarfile.open(tmp_path / "aclImdb_v1.tar.gz", "w:gz") as tar:
        for review in (0, 1):
            member = tarfile.TarInfo(f"aclImdb/train/pos/{review}_9.txt")
            member.size = 100
            tar.addfile(member, io.BytesIO(b"x" * 100))
    with pytest.raises(DataError, match="reviews come to more than the 0 MB of memory available"):
        load_imdb(tmp_path, "train")


def test_wrong_archive(tmp_path):
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"this is not a tar archive")
    with pytest.raises(DataError, match="not a readable IMDB archive"):
        load_imdb(tmp_path, "train")


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_imdb(tmp_path, "dev")


def test_imdb_is_downloaded_only_into_a_missing_or_empty_folder(tmp_path, monkeypatch):
    downloads = []

    def fake_download(root):
        downloads.append(root.name)
        return write_imdb_tree(root, {split: synthetic_reviews(5) for split in ("train", "test")})

    monkeypatch.setattr(loaders, "download_imdb", fake_download)
    own = tmp_path / "own"
    own.mkdir()
    (own / "train.tsv").write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match="own holds train.tsv but no test file .*--test-file"):
        loaders.split_reviews(own)
    (own / "train.tsv").rename(own / "notes.tsv")
    with pytest.raises(DataError, match="own holds no IMDB data: expected .*your own train and test files .*since "
                                        "it is not empty"):
        loaders.split_reviews(own)
    assert downloads == [] and [p.name for p in own.iterdir()] == ["notes.tsv"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "interrupted").mkdir()
    (tmp_path / "interrupted" / "aclImdb_v1.tar.gz.part").write_bytes(b"half")
    for name in ("missing", "empty", "interrupted"):
        train, val, test = loaders.split_reviews(tmp_path / name, validation_split=0.2)
        assert len(train.texts) + len(val.texts) == 10 and len(test.texts) == 10
    assert downloads == ["missing", "empty", "interrupted"]

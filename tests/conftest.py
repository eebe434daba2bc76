"""Shared fixtures: the real data (skipped with the reason where it is absent), small real subsets of it, and a
tiny trained model directory."""

import logging
import re
import tarfile

import pytest

from src.inference import SentimentPredictor
from src.utils.device import cpu_has_native_bfloat16
from tests.helpers import IMDB_ARCHIVE, SHARED_DATA, SUBSET_IDS, tiny_trained_model, write_review_csvs

_LABELLED = re.compile(r"^aclImdb/(train|test)/(pos|neg)/(\d+)_\d+\.txt$")


def pytest_collection_modifyitems(config, items):
    """Mark the tests that read the real data ``real_data``, and skip them, with the reason, where it is absent."""
    skip = pytest.mark.skip(reason=f"real data not found under {SHARED_DATA} (set LSTM_SENTIMENT_SHARED_DATA)")
    for item in items:
        if "real_data" in item.fixturenames:
            item.add_marker(pytest.mark.real_data)
            if not IMDB_ARCHIVE.is_file():
                item.add_marker(skip)


# Where training and prediction ask whether the CPU has bfloat16 instructions ("auto" precision)
_NATIVE_BFLOAT16_CHECK = "src.utils.device.cpu_has_native_bfloat16"


@pytest.fixture(autouse=True, scope="session")
def float32_on_every_cpu():
    """Training and prediction in the test process compute in float32 on every CPU, so the numbers the tests
    compare are the same on a CI machine with bfloat16 instructions (for the whole session, so models that
    module fixtures train are float32 too); tests marked ``native_precision`` see the CPU as it is."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_NATIVE_BFLOAT16_CHECK, lambda: False)
        yield


@pytest.fixture(autouse=True)
def native_precision_where_marked(request, monkeypatch):
    if request.node.get_closest_marker("native_precision") is not None:
        monkeypatch.setattr(_NATIVE_BFLOAT16_CHECK, cpu_has_native_bfloat16)


@pytest.fixture(autouse=True)
def no_training_log_handlers_left():
    """A training run in the test process adds console and file handlers (``configure_logging``); removed after
    each test, so that a later test's log lines do not go to a stream pytest has closed since."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_lstm_sentiment", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture(scope="session")
def real_data():
    return SHARED_DATA


@pytest.fixture(scope="session")
def imdb_tree(tmp_path_factory, real_data):
    """An ``aclImdb`` tree of real reviews, extracted once per session: reviews 0-999 of every split
    and label (1,000 positive and 1,000 negative for training and for test), no unlabeled ones."""
    root = tmp_path_factory.mktemp("imdb")
    with tarfile.open(IMDB_ARCHIVE) as tar:
        for member in tar:
            match = _LABELLED.match(member.name)
            if (match and int(match.group(3)) < SUBSET_IDS) or member.isdir() and "/unsup" not in member.name:
                tar.extract(member, root)
    return root


@pytest.fixture(scope="session")
def imdb_subset_archive(imdb_tree, tmp_path_factory):
    """``imdb_tree`` packed as ``aclImdb_v1.tar.gz``: a small archive of the real layout."""
    archive = tmp_path_factory.mktemp("subset-archive") / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(imdb_tree / "aclImdb", arcname="aclImdb")
    return archive


@pytest.fixture(scope="session")
def csv_reviews(imdb_tree, tmp_path_factory):
    """600 training and 200 test reviews of the real data set as CSV files (quick to load)."""
    return write_review_csvs(imdb_tree, tmp_path_factory.mktemp("csv-reviews"), 600, 200)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model directory trained on synthetic reviews (once per session), for the service's tests."""
    return tiny_trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(model_dir):
    return SentimentPredictor.from_pretrained(model_dir)

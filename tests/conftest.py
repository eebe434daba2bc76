import tarfile

import pytest

from tests.helpers import IMDB_ARCHIVE, SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """Tests that need the real data are skipped, with the reason, where it is absent."""
    if IMDB_ARCHIVE.is_file():
        return
    skip = pytest.mark.skip(reason=f"real data not found under {SHARED_DATA} (set LSTM_SENTIMENT_SHARED_DATA)")
    for item in items:
        if "real_data" in item.fixturenames or item.get_closest_marker("real_data"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_data():
    return SHARED_DATA


@pytest.fixture(scope="session")
def imdb_tree(tmp_path_factory, real_data):
    """The real archive extracted once per test session (a few seconds)."""
    root = tmp_path_factory.mktemp("imdb")
    with tarfile.open(IMDB_ARCHIVE) as tar:
        for member in tar:
            if "/unsup/" not in member.name:
                tar.extract(member, root)
    return root

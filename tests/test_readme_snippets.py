"""Every Python snippet of the READMEs runs, in order, on a small subset of the real data.

The snippets are written for the full data set and 20 epochs; here the loaders are
capped at a few hundred short reviews and each ``train`` call at two epochs.
"""

import re

import pytest

import src.data
from src.data import TextPreprocessor
from src.models.model_dir import save_model_directory
from src.training import Trainer
from tests.helpers import REPO_ROOT, tiny_model, write_rating_tables

READMES = ["src/training/README.md", "README.md", "docs/your-own-data.md"]


def python_snippets(path):
    return re.findall(r"```python\n(.*?)```", (REPO_ROOT / path).read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def small_budget(monkeypatch, tmp_path, real_data, imdb_tree):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "imdb").symlink_to(imdb_tree)  # 4,000 real reviews: quicker to read than the archive
    (tmp_path / "data" / "glove").mkdir()
    (tmp_path / "data" / "glove" / "glove.6B.zip").symlink_to(real_data / "glove" / "glove.6B.zip")
    write_rating_tables(imdb_tree, tmp_path / "my-data")  # "your own data": four classes
    monkeypatch.chdir(tmp_path)
    real_loaders = src.data.create_data_loaders

    def small(*args, **kwargs):  # short reviews, whatever max_length the snippet asks for
        cap = {} if kwargs.get("preprocessor") is not None else {"max_length": 48}
        return real_loaders(*args, **{**kwargs, "max_train_samples": 300, "max_test_samples": 100, **cap})

    monkeypatch.setattr(src.data, "create_data_loaders", small)
    real_train = Trainer.train
    monkeypatch.setattr(Trainer, "train", lambda self, epochs, *a, **k: real_train(self, min(epochs, 2), *a, **k))
    processor = TextPreprocessor().build_vocab(["a wonderful moving film", "dreadful", "loved it"])
    for name in ("models", "model-seed1"):  # the README's ensemble snippet averages both
        save_model_directory(name, tiny_model(vocab_size=processor.vocab_size), processor, {"max_length": 50})


@pytest.mark.parametrize("readme", READMES)
def test_readme_snippets_run(readme, small_budget):
    snippets = python_snippets(readme)
    assert snippets, f"{readme} has no python snippets"
    namespace = {}
    for index, code in enumerate(snippets):
        try:
            exec(compile(code, f"{readme} snippet {index + 1}", "exec"), namespace)
        except Exception as err:  # report which snippet broke
            pytest.fail(f"{readme} snippet {index + 1} failed: {type(err).__name__}: {err}\n{code}")

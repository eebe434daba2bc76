"""A model directory is untrusted input: every field is checked, and nothing is built from a config
before it matches the stored weights (issue: hostile model directories)."""

import json
import shutil

import pytest
import torch

from src.data import TextPreprocessor
from src.exceptions import PipelineError
from src.inference.predict import main as predict_main
from src.models.lstm_model import LSTMClassifier, LSTMConfig
from src.models.model_dir import _manifest, load_model_directory, save_model_directory
from src.utils.checkpoint_io import load_state, save_state


@pytest.fixture(scope="module")
def good_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "model"
    processor = TextPreprocessor(max_vocab_size=50).build_vocab(["good film", "bad film", "a plot"])
    torch.manual_seed(0)
    save_model_directory(directory, LSTMClassifier(processor.vocab_size, embedding_dim=8, hidden_dim=8, n_layers=1),
                         processor)
    return directory


def tampered(good, target, vocab=None, model_config=None, weights=None):
    """A copy of ``good`` edited as an attacker would (``weights`` edits the weights in place): consistent
    manifest and checksum included."""
    shutil.copytree(good, target)
    if vocab is not None:
        state = json.loads((target / "vocab.json").read_text())
        (target / "vocab.json").write_text(json.dumps({**state, **vocab}))
    state = load_state(target / "model.pt")
    state.pop("format_version")
    state["model_config"].update(model_config or {})
    if weights is not None:
        weights(state["model_state"])
    state["manifest"] = _manifest(target)
    save_state(target / "model.pt", state)
    return target


@pytest.mark.parametrize("change, message", [
    ({"max_length": 0}, "vocab.json: .*max_length must be at least 1, got 0"),
    ({"max_length": -1}, "vocab.json: .*max_length must be at least 1"),
    ({"max_length": 10 ** 9}, "vocab.json: .*max_length must be at most 100000"),
    ({"truncation": "bogus"}, "vocab.json: .*truncation must be one of head, head_tail"),
    ({"itos": ["<pad>", "<unk>", 1, 2, 3, 4, 5]}, "vocab.json: .*list of strings"),
])
def test_bad_vocabulary_fields_are_refused_naming_the_file_and_field(good_directory, tmp_path, change, message):
    with pytest.raises(PipelineError, match=message):
        load_model_directory(tampered(good_directory, tmp_path / "bad", vocab=change))


@pytest.mark.parametrize("change, message", [
    ({"vocab_size": 5 * 10 ** 7}, "embedding.weight is \\(7, 8\\) in the weights"),
    ({"n_layers": 10 ** 6}, "n_layers must be at most 32, got 1000000"),
    ({"n_layers": 32}, "n_layers is 32 but the weights hold 1 layers"),
    ({"hidden_dim": 10 ** 7}, "weight_ih_l0 is \\(32, 8\\) in the weights"),
    ({"bidirectional": False}, "names do not match"),
    ({"pooling": "mean"}, "fc.weight"),
])
def test_a_model_config_unlike_its_weights_is_refused_before_anything_is_built(good_directory, tmp_path,
                                                                             monkeypatch, change, message):
    def no_building(*args, **kwargs):
        raise AssertionError("a model was built from the file's config before it was checked")

    directory = tampered(good_directory, tmp_path / "bad", model_config=change)
    monkeypatch.setattr(LSTMClassifier, "__init__", no_building)
    with pytest.raises(PipelineError, match=f"model.pt does not hold a usable model \\(.*{message}"):
        load_model_directory(directory)


@pytest.mark.parametrize("edit, message", [
    (lambda weights: weights["fc.weight"].fill_(float("nan")), "fc.weight holds values that are not finite"),
    (lambda weights: weights["fc.bias"].fill_(float("inf")), "fc.bias holds values that are not finite"),
    (lambda weights: weights.update({"embedding.weight": weights["embedding.weight"].to(torch.int8)}),
     "embedding.weight holds torch.int8 numbers where weights are floating point"),
], ids=["nan", "inf", "int8"])
def test_weights_that_are_not_finite_floating_point_numbers_are_refused(good_directory, tmp_path, edit, message):
    with pytest.raises(PipelineError, match=f"model.pt does not hold a usable model \\(.*{message}"):
        load_model_directory(tampered(good_directory, tmp_path / "bad", weights=edit))


def test_predict_gives_one_line_for_a_hostile_directory(good_directory, tmp_path, capsys):
    directory = tampered(good_directory, tmp_path / "bad", model_config={"n_layers": 32})
    assert predict_main(["--model-dir", str(directory), "Good film."]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_layers is 32" in err and "Traceback" not in err


@pytest.mark.parametrize("settings", [
    {}, {"bidirectional": False}, {"n_layers": 3, "pooling": "last"}, {"pooling": "mean", "output_dim": 3},
    {"n_layers": 3, "stacking": "per_direction"}])
def test_weight_shapes_are_those_of_the_built_model(settings):
    config = LSTMConfig(vocab_size=11, embedding_dim=6, hidden_dim=5, **settings)
    built = {name: tuple(value.shape) for name, value in LSTMClassifier.from_config(config).state_dict().items()}
    assert config.weight_shapes() == built


def test_resuming_from_a_checkpoint_unlike_its_weights_is_refused_before_building(tmp_path, monkeypatch):
    from src.config import TrainConfig
    from src.training.pipeline import _resume_source
    from tests.helpers import make_trainer

    path = make_trainer(tmp_path / "run").save_checkpoint("hostile.pt")
    state = load_state(path)
    state.pop("format_version")
    state["model_config"]["vocab_size"] = 5 * 10 ** 7
    state["preprocessor"] = TextPreprocessor().build_vocab(["a b"]).to_dict()
    save_state(path, state)
    monkeypatch.setattr(LSTMClassifier, "__init__", lambda *a, **k: pytest.fail("built before the check"))
    with pytest.raises(PipelineError, match="hostile.pt does not hold a usable model .*embedding.weight"):
        _resume_source(TrainConfig(resume=str(path), checkpoint_dir=str(tmp_path / "run")))

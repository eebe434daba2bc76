"""Temperature scaling: fitted on the validation split by training, saved in the model directory, applied by
the predictor; and the model card training writes beside it."""

import json

import numpy as np
import pytest

from src.config import TrainConfig
from src.exceptions import CheckpointError
from src.inference import SentimentPredictor
from src.inference.metrics import calibration, fit_temperature, log_loss
from src.inference.predictor import probabilities_of
from src.models.model_dir import CALIBRATION_FILE, CARD_FILE, load_temperature
from src.training.pipeline import run_training


def overconfident(classes: int, scale: float, count: int = 4000, seed: int = 0):
    """Labels and scores whose true log-odds (or logits) are ``scores / scale``."""
    rng = np.random.default_rng(seed)
    true_scores = rng.normal(0, 2, count) if classes == 2 else rng.normal(0, 2, (count, classes))
    truth = probabilities_of(true_scores)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    return labels, true_scores * scale


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_fit_temperature_undoes_a_known_scaling(classes, scale):
    labels, scores = overconfident(classes, scale)
    temperature = fit_temperature(labels, scores)
    assert temperature == pytest.approx(scale, rel=0.1)
    assert log_loss(labels, scores / temperature) < log_loss(labels, scores)
    before, after = probabilities_of(scores), probabilities_of(scores / temperature)
    assert np.array_equal(before.argmax(axis=1), after.argmax(axis=1))  # no label changes
    assert calibration(labels, after)["ece"] < calibration(labels, before)["ece"]


def test_a_temperature_at_its_bound_is_said_in_the_log(caplog):
    """Scores a hundred times too timid (as after too little training) need T = 0.01, below the bound."""
    from types import SimpleNamespace

    from src.training.pipeline import _calibrate

    labels, scores = overconfident(2, 0.01)
    reviews = SimpleNamespace(labels=labels)
    with caplog.at_level("INFO"):
        result = _calibrate(reviews, scores, reviews, scores)
    assert result["temperature"] == pytest.approx(0.05, rel=0.01)
    assert "the calibration temperature stopped at its bound, 0.05 (it may be 0.05 to 20)" in caplog.text
    caplog.clear()
    labels, scores = overconfident(2, 3.0)
    with caplog.at_level("INFO"):
        _calibrate(SimpleNamespace(labels=labels), scores, SimpleNamespace(labels=labels), scores)
    assert "calibration temperature" not in caplog.text


def test_log_loss_matches_the_probabilities():
    labels, scores = overconfident(3, 1.0, count=50)
    expected = -np.mean(np.log(probabilities_of(scores)[np.arange(50), labels]))
    assert log_loss(labels, scores) == pytest.approx(expected)
    binary_labels, binary_scores = overconfident(2, 1.0, count=50)
    expected = -np.mean(np.log(probabilities_of(binary_scores)[np.arange(50), binary_labels]))
    assert log_loss(binary_labels, binary_scores) == pytest.approx(expected)


@pytest.mark.parametrize("content, reason", [
    ('{"temperature": 0}', "from 0.05 to 20"), ('{"temperature": 1e9}', "from 0.05 to 20"),
    ('{"temperature": "2"}', "from 0.05 to 20"), ('{"temperature": true}', "from 0.05 to 20"),
    ('{"temperature": NaN}', "from 0.05 to 20"), ('{}', "not a readable calibration file"),
    ("[1.5]", "not a readable calibration file"), ("{not json", "not a readable calibration file")])
def test_a_bad_calibration_file_is_refused_in_one_line(tmp_path, content, reason):
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(CheckpointError, match=reason):
        load_temperature(tmp_path)


def test_no_calibration_file_means_no_temperature(tmp_path):
    assert load_temperature(tmp_path) == 1.0


@pytest.fixture(scope="module")
def trained(imdb_tree, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrated")
    cfg = TrainConfig(data_dir=str(imdb_tree), output_dir=str(root / "model"), checkpoint_dir=str(root / "run"),
                      epochs=2, embedding_dim=16, hidden_dim=16, n_layers=1, max_length=120, batch_size=32,
                      max_train_samples=1200, max_test_samples=300, learning_rate=0.003, pretrain_lm_epochs=0,
                      quiet=True, tensorboard=False)
    return root, run_training(cfg)


def test_training_fits_saves_and_applies_a_temperature(trained, imdb_tree):
    root, metrics = trained
    saved = json.loads((root / "model" / CALIBRATION_FILE).read_text())
    fitted = metrics["calibration"]
    assert saved["temperature"] == fitted["temperature"] and saved["fitted_on"] == "validation"
    assert saved["validation_reviews"] == 240  # 20% of 1,200
    assert fitted["validation_ece_after"] <= fitted["validation_ece_before"]
    predictor = SentimentPredictor.from_pretrained(root / "model")
    assert predictor.temperature == saved["temperature"]
    texts = ["A wonderful film.", "Dull and far too long.", "It was fine, I guess."]
    expected = probabilities_of(predictor.scores(texts) / saved["temperature"])
    assert np.allclose(predictor.class_probabilities(texts), expected)
    assert metrics["test"]["ece"] == pytest.approx(fitted["test_ece_after"])


def test_a_calibration_file_of_another_run_is_refused(trained, tmp_path):
    import shutil

    model = shutil.copytree(trained[0] / "model", tmp_path / "model")
    (model / CALIBRATION_FILE).write_text('{"temperature": 3.0}')
    with pytest.raises(CheckpointError, match="mixes files of two training runs"):
        SentimentPredictor.from_pretrained(model)


def test_the_model_card_reports_the_run(trained):
    root, metrics = trained
    card = (root / "model" / CARD_FILE).read_text()
    for heading in ("## Model", "## Data", "## Training", "## Evaluation", "## Calibration", "## Speed",
                    "## Intended use and limits"):
        assert heading in card
    assert f"| the model | {100 * metrics['test']['accuracy']:.2f}% |" in card
    assert f"temperature of {metrics['calibration']['temperature']:.3f}" in card
    assert "1,200 for training" not in card and "960 for training" in card  # the 80% left after validation
    assert "IMDB's Large Movie Review Dataset" in card and "240 tokens of a text" in card  # twice --max-length 120
    assert "120 tokens per text in training and 240 in evaluation" in card
    assert f"{metrics['speed']['reviews_per_second']:,.0f} reviews per second" in card
    assert str(root) not in card and "/tmp" not in card  # no paths of the training machine

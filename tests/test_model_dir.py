"""The model directory: written as a whole, refused when mixed, readable from earlier versions,
and predicting exactly as training evaluated."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from src.data import TextPreprocessor, create_data_loaders, load_imdb
from src.exceptions import CheckpointError
from src.inference import SentimentPredictor
from src.inference.metrics import binary_metrics
from src.models import model_dir
from src.models.model_dir import load_model_directory, save_model_directory
from src.training import create_trainer
from src.training.pipeline import find_resume_checkpoint
from src.training.train_model import main
from src.utils import io as io_module
from src.utils.checkpoint_io import content_digest
from tests.helpers import make_trainer, tiny_model

WORDS = [f"w{i}" for i in range(20)]
OTHER_WORDS = [f"x{i}" for i in range(20)]  # another vocabulary of the same size


def model_and_vocabulary(seed, words):
    torch.manual_seed(seed)
    preprocessor = TextPreprocessor(max_length=12).build_vocab([" ".join(words)])
    return tiny_model(vocab_size=preprocessor.vocab_size), preprocessor


def weights_equal(model, other):
    return all(torch.equal(value, other.state_dict()[name]) for name, value in model.state_dict().items())


class Killed(BaseException):
    """Stands in for a kill: nothing after it runs (the cleanup of a real kill would not either)."""


# every write of save_model_directory, in order; a kill just before or just after each
WRITE_STEPS = [(TextPreprocessor, "save"), (model_dir, "atomic_write_json"), (model_dir, "save_state"),
               (io_module, "_exchange"), (io_module.shutil, "rmtree")]


@pytest.mark.parametrize("owner, name", WRITE_STEPS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_at_any_step_leaves_the_old_model_or_the_new_one(tmp_path, monkeypatch, owner, name, when):
    target = tmp_path / "model"
    old_model, old_vocab = model_and_vocabulary(1, WORDS)
    new_model, new_vocab = model_and_vocabulary(2, OTHER_WORDS)  # same size, other words
    save_model_directory(target, old_model, old_vocab)
    real = getattr(owner, name)

    def killed(*args, **kwargs):
        if when == "before":
            raise Killed
        real(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(owner, name, killed)
    with pytest.raises(Killed):
        save_model_directory(target, new_model, new_vocab)
    monkeypatch.undo()
    loaded, vocabulary = load_model_directory(target)
    assert (weights_equal(loaded, old_model) and vocabulary.itos == old_vocab.itos) or (
        weights_equal(loaded, new_model) and vocabulary.itos == new_vocab.itos)


def test_the_directory_is_replaced_as_a_whole(tmp_path):
    target = tmp_path / "model"
    first_model, first_vocab = model_and_vocabulary(1, WORDS)
    save_model_directory(target, first_model, first_vocab, metrics={"run": 1})
    (target / "evaluation.json").write_text("{}")  # an evaluation of the first model: replaced too
    second_model, second_vocab = model_and_vocabulary(2, WORDS)
    save_model_directory(target, second_model, second_vocab, metrics={"run": 2})
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "metrics.json", "model.pt", "vocab.json"]
    assert weights_equal(load_model_directory(target)[0], second_model)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left
    # the mode mkdir gives (the staging folder's 0700 kept the model from other users: a service, say)
    assert target.stat().st_mode & 0o777 == io_module.DIRECTORY_MODE == 0o777 & ~io_module._current_umask()


@pytest.mark.parametrize("name", ["vocab.json", "config.json", "metrics.json"])
def test_a_directory_with_another_runs_file_is_refused(tmp_path, name):
    for run, seed, words in (("a", 1, WORDS), ("b", 2, OTHER_WORDS)):
        save_model_directory(tmp_path / run, *model_and_vocabulary(seed, words), {"run": run}, {"run": run})
    (tmp_path / "a" / name).write_bytes((tmp_path / "b" / name).read_bytes())
    with pytest.raises(CheckpointError,
                       match=f"mixes files of two training runs or holds a damaged one \\({name} not the one"):
        load_model_directory(tmp_path / "a")
    (tmp_path / "a" / name).unlink()  # not another run's file: none
    with pytest.raises(CheckpointError, match=f"a lacks {name}, saved with its model.pt; copy the whole directory"):
        load_model_directory(tmp_path / "a")


def test_a_folder_with_other_files_is_not_replaced(tmp_path, csv_reviews, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["--data-dir", str(csv_reviews), "--output-dir", str(out), "--checkpoint-dir", str(tmp_path / "run"),
                 "--epochs", "1", "--quiet", "--no-tensorboard"])
    err = capsys.readouterr().err
    assert code == 1 and "holds files that are not a model's (notes.txt)" in err and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "mine" and not list((tmp_path / "run").glob("*.pt"))


def write_version_1_directory(directory, model, preprocessor, config):
    """A model directory as the releases before format version 2 wrote it."""
    directory.mkdir()
    payload = {"format_version": 1, "model_config": asdict(model.config), "model_state": model.state_dict()}
    payload["checksum"] = content_digest(payload)
    torch.save(payload, directory / "model.pt")
    vocabulary = {"format_version": 1, "max_vocab_size": preprocessor.max_vocab_size,
                  "min_freq": preprocessor.min_freq, "lowercase": True, "itos": preprocessor.itos}
    (directory / "vocab.json").write_text(json.dumps(vocabulary))
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "metrics.json").write_text("{}")


def test_model_directories_of_format_version_1_still_load(tmp_path):
    model, preprocessor = model_and_vocabulary(1, WORDS)
    write_version_1_directory(tmp_path / "v1", model, preprocessor, {"max_length": 5, "truncation": "head_tail"})
    predictor = SentimentPredictor.from_pretrained(tmp_path / "v1")
    assert (predictor.preprocessor.max_length, predictor.preprocessor.truncation) == (5, "head_tail")
    assert weights_equal(predictor.model, model)
    text = " ".join(WORDS)
    model.eval()
    kept = [preprocessor.stoi[word] for word in ("w0", "w16", "w17", "w18", "w19")]  # a quarter of 5, then the end
    expected = torch.sigmoid(model(torch.tensor([kept]))).item()
    assert predictor.predict(text)["probability"] == pytest.approx(expected, abs=1e-6)
    write_version_1_directory(tmp_path / "no-config", model, preprocessor, {})
    assert SentimentPredictor.from_pretrained(tmp_path / "no-config").max_length == 400  # the old default


def test_training_checkpoints_of_format_version_1_give_weights_but_no_resume(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    payload = {"format_version": 1, "model_config": asdict(trainer.model.config),
               "model_state": trainer.model.state_dict(), "epoch": 3}
    payload["checksum"] = content_digest(payload)
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format version 1, this version of lstm-sentiment reads version 2"):
        trainer.load_checkpoint(tmp_path / "old.pt")
    assert trainer.load_checkpoint(tmp_path / "old.pt", load_optimizer=False)["epoch"] == 3
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old.pt").rename(tmp_path / "old-run" / "checkpoint_epoch_003.pt")
    with pytest.raises(CheckpointError, match="format version 1"):  # --resume auto must not start over it
        find_resume_checkpoint(tmp_path / "old-run")


def test_a_model_saved_from_the_python_api_predicts_as_training_evaluated(tmp_path, csv_reviews):
    train_loader, val_loader, test_loader, preprocessor = create_data_loaders(
        csv_reviews, batch_size=16, max_length=30, truncation="head", max_vocab_size=3000)
    torch.manual_seed(0)  # near 0.5, a last-bit difference could flip a label: fixed weights keep it repeatable
    trainer = create_trainer(tiny_model(vocab_size=preprocessor.vocab_size), train_loader, val_loader,
                             checkpoint_dir=tmp_path / "run", progress=False)
    trainer.train(epochs=1)
    evaluated = trainer.evaluate_model(test_loader)
    save_model_directory(tmp_path / "model", trainer.model, preprocessor)
    predicted = SentimentPredictor.from_pretrained(tmp_path / "model").probabilities(test_loader.dataset.texts)
    labels = test_loader.dataset.labels
    assert binary_metrics(labels, predicted)["accuracy"] == evaluated["accuracy"]
    assert binary_metrics(labels, predicted)["loss"] == pytest.approx(evaluated["loss"], rel=1e-5)


def test_a_model_trained_from_the_command_line_predicts_as_training_evaluated(tmp_path, csv_reviews):
    out = tmp_path / "model"
    assert main(["--data-dir", str(csv_reviews), "--output-dir", str(out), "--checkpoint-dir", str(tmp_path / "run"),
                 "--epochs", "1", "--max-length", "40", "--embedding-dim", "16", "--hidden-dim", "8",
                 "--pretrain-lm-epochs", "0", "--quiet", "--no-tensorboard"]) == 0
    test = load_imdb(csv_reviews, "test")
    probabilities = SentimentPredictor.from_pretrained(out).probabilities(test.texts)
    reported = json.loads((out / "metrics.json").read_text())["test"]
    assert reported["accuracy"] == float(np.mean((probabilities >= 0.5) == np.asarray(test.labels)))
    assert json.loads((out / "vocab.json").read_text())["truncation"] == "head_tail"  # the training default


@pytest.mark.parametrize("config_text, message", [
    ("{not json", "config.json is not a readable settings file"),
    ('{"max_length": "400x"}', "max_length must be a whole number"),
    ('{"max_length": 0}', "max_length must be at least 1"),
])
def test_a_version_1_directory_with_a_bad_config_json_gives_one_line(tmp_path, capsys, config_text, message):
    from src.inference.predict import main as predict_main

    model, preprocessor = model_and_vocabulary(1, WORDS)
    write_version_1_directory(tmp_path / "v1", model, preprocessor, {})
    (tmp_path / "v1" / "config.json").write_text(config_text)
    assert predict_main(["--model-dir", str(tmp_path / "v1"), "Fine."]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "vocab.json" in err

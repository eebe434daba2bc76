"""--average-epochs: the final weights are the best epoch's, or their average with the epochs after it where
validation, by the run's own rule of "better", prefers the average."""

import json

import pytest
import torch

from src.training.averaging import average_weights, settle_final_weights
from src.utils.checkpoint_io import load_state
from tests.helpers import make_trainer


def scripted_validation(trainer, losses, accuracies=None):
    """Validation returns these losses (and accuracies) in turn, during training and after it."""
    scores = iter(zip(losses, accuracies or [0.5] * len(losses)))

    def evaluate(loader):
        loss, accuracy = next(scores)
        return {"loss": loss, "accuracy": accuracy, "n_examples": 100}

    trainer.evaluate_model = evaluate


def weights_of(run_dir, *epochs):
    return [load_state(run_dir / f"checkpoint_epoch_{epoch:03d}.pt")["model_state"] for epoch in epochs]


def assert_model_holds(trainer, expected):
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value, expected[name]), name


TRAINING = [0.5, 0.4, 0.3, 0.35, 0.36, 0.37]  # epoch 3 is the best


def test_average_weights_means_floats_and_keeps_the_last_integers():
    first = {"w": torch.tensor([1.0, 3.0]), "steps": torch.tensor(4)}
    second = {"w": torch.tensor([3.0, 5.0]), "steps": torch.tensor(7)}
    averaged = average_weights([first, second])
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and int(averaged["steps"]) == 7


def test_an_average_replaces_the_best_epoch_only_where_it_beats_the_one_kept_so_far(tmp_path):
    trainer = make_trainer(tmp_path, min_delta=0.001)
    scripted_validation(trainer, TRAINING + [0.28, 0.2795, 0.25])  # epochs 3-4 better, 3-5 not by min_delta, 3-6 better
    trainer.train(epochs=6)
    final = settle_final_weights(trainer, average_epochs=4)
    assert final == {"epochs": [3, 4, 5, 6], "loss": 0.25, "accuracy": 0.5}
    assert_model_holds(trainer, average_weights(weights_of(tmp_path, 3, 4, 5, 6)))


def test_without_a_better_average_the_best_epoch_stays(tmp_path):
    trainer = make_trainer(tmp_path)
    scripted_validation(trainer, TRAINING + [0.3, 0.31])
    trainer.train(epochs=6)
    assert settle_final_weights(trainer, average_epochs=3) == {"epochs": [3]}
    assert_model_holds(trainer, weights_of(tmp_path, 3)[0])
    untouched = make_trainer(tmp_path / "off")
    scripted_validation(untouched, TRAINING)  # one more validation would fail: 1 tries no average
    untouched.train(epochs=6)
    assert settle_final_weights(untouched, average_epochs=1) == {"epochs": [3]}


def test_averages_stop_at_the_first_epoch_not_kept(tmp_path):
    trainer = make_trainer(tmp_path)
    scripted_validation(trainer, TRAINING + [0.1])  # only the average of 3-4 is scored: epoch 5 was not saved
    trainer.train(epochs=6, save_every=2)
    assert not (tmp_path / "checkpoint_epoch_005.pt").exists()
    assert settle_final_weights(trainer, average_epochs=5)["epochs"] == [3, 4]
    assert_model_holds(trainer, average_weights(weights_of(tmp_path, 3, 4)))


def test_a_run_that_monitors_accuracy_compares_accuracies(tmp_path):
    trainer = make_trainer(tmp_path, monitor="val_accuracy")
    accuracies = [0.6, 0.7, 0.8, 0.75, 0.7, 0.7]
    # the averages' losses are worse, their accuracy better: accuracy decides
    scripted_validation(trainer, TRAINING + [0.9, 0.9], accuracies + [0.8005, 0.82])
    trainer.train(epochs=6)
    assert settle_final_weights(trainer, average_epochs=3)["epochs"] == [3, 4, 5]


def test_training_keeps_the_average_in_the_model_directory(tmp_path, csv_reviews):
    """The pipeline's model directory holds the weights settle_final_weights chose, and says which."""
    from src.config import TrainConfig
    from src.models.model_dir import load_model_directory
    from src.training.pipeline import run_training

    cfg = TrainConfig(data_dir=str(csv_reviews), output_dir=str(tmp_path / "model"),
                      checkpoint_dir=str(tmp_path / "run"), epochs=4, min_delta=0.0, embedding_dim=16, hidden_dim=8,
                      n_layers=1, batch_size=32, max_vocab_size=500, max_length=64, pretrain_lm_epochs=0,
                      average_epochs=3, quiet=True, device="cpu", tensorboard=False, learning_rate=0.003)
    metrics = run_training(cfg)
    final = metrics["final_weights"]
    assert final["epochs"][0] == metrics["best_epoch"] and json.loads(
        (tmp_path / "model" / "metrics.json").read_text())["final_weights"] == final
    model, _ = load_model_directory(tmp_path / "model")
    expected = average_weights(weights_of(tmp_path / "run", *final["epochs"]))
    for name, value in model.state_dict().items():
        assert torch.allclose(value, expected[name]), name
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert ("the weights of the average of epochs" if len(final["epochs"]) > 1 else "the weights of epoch") in card


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_the_command_refuses_a_bad_average_epochs(value, tmp_path, capsys):
    from src.training.train_model import main

    with pytest.raises(SystemExit) as stopped:
        main(["--data-dir", str(tmp_path / "none"), "--average-epochs", value])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "--average-epochs" in err and "Traceback" not in err

"""--plateau-patience and --restore-best-on-plateau: when the plateau schedule halves the learning rate, the
next epoch starts from the best epoch's weights; resumed runs do the same at the same moment."""

import pytest
import torch

from src.config import TrainConfig
from src.exceptions import TrainingInterrupted
from src.training.pipeline import run_training
from src.training.schedulers import PlateauScheduler
from src.training.trainer import MID_EPOCH_NAME
from src.utils.checkpoint_io import load_state
from tests.helpers import interrupt_at, make_trainer, synthetic_reviews, write_imdb_tree

SCRIPTED_LOSSES = [1.0, 1.1, 1.2, 1.3, 1.4]  # validation loss by epoch: epoch 1 stays the best
BATCHES_PER_EPOCH = 12  # synthetic_loaders: 180 training reviews in batches of 16


def scripted_trainer(run_dir, **options):
    """A tiny trainer whose validation loss follows SCRIPTED_LOSSES; halves the rate after two epochs without
    a new best (unless ``options`` say otherwise) and then goes back to the best weights."""
    options = {"plateau_patience": 2, **options}
    trainer = make_trainer(run_dir, seed=3, restore_best_on_plateau=True, **options)
    evaluate = trainer.evaluate_model
    trainer.evaluate_model = lambda loader: {**evaluate(loader), "loss": SCRIPTED_LOSSES[trainer.epoch]}
    return trainer


def same_weights(a, b) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def test_the_plateau_schedule_says_when_it_lowered_the_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = PlateauScheduler(optimizer, patience=1)
    lowered = []
    for improved in (True, False, False, True, False, False, False):
        schedule.step(improved)
        lowered.append(schedule.lowered)
    assert lowered == [False, False, True, False, False, True, False]
    assert schedule.get_last_lr() == [0.25]
    restored = PlateauScheduler(optimizer, patience=1)
    restored.load_state_dict({**schedule.state_dict(), "lowered": True})
    assert restored.lowered and restored.bad_epochs == 1
    older = {key: value for key, value in schedule.state_dict().items() if key != "lowered"}
    restored.load_state_dict(older)  # a checkpoint from before the flag existed
    assert not restored.lowered


def test_after_the_rate_is_halved_the_next_epoch_starts_from_the_best_weights(tmp_path):
    trainer = scripted_trainer(tmp_path)
    starts = []
    train_epoch = trainer.train_epoch

    def recording_start():
        starts.append({name: value.clone() for name, value in trainer.model.state_dict().items()})
        return train_epoch()

    trainer.train_epoch = recording_start
    history = trainer.train(5, early_stopping_patience=10)
    assert history["learning_rates"] == [0.01, 0.01, 0.01, 0.005, 0.005]  # halved after epochs 2-3 brought none
    saved = {epoch: load_state(tmp_path / f"checkpoint_epoch_{epoch:03d}.pt")["model_state"] for epoch in (1, 2, 3)}
    assert same_weights(starts[2], saved[2])  # no cut yet: epoch 3 goes on from epoch 2
    assert same_weights(starts[3], saved[1]) and not same_weights(starts[3], saved[3])  # epoch 4: from the best
    assert same_weights(load_state(tmp_path / "best_model.pt")["model_state"], saved[1])
    assert not same_weights(load_state(tmp_path / "checkpoint_epoch_004.pt")["model_state"], saved[1])


@pytest.mark.parametrize("where", ["after the cut", "in the epoch after it"])
def test_a_resumed_run_goes_back_to_the_best_weights_exactly_once(tmp_path, where):
    straight = scripted_trainer(tmp_path / "straight")
    straight.train(5, early_stopping_patience=10)
    stopped = scripted_trainer(tmp_path / "parts")
    if where == "after the cut":
        stopped.train(3, early_stopping_patience=10)
        checkpoint = tmp_path / "parts" / "checkpoint_epoch_003.pt"
    else:
        interrupt_at(stopped, 3 * BATCHES_PER_EPOCH + 4)
        with pytest.raises(TrainingInterrupted, match="in epoch 4 after 4 of 12 batches"):
            stopped.train(5, early_stopping_patience=10)
        checkpoint = tmp_path / "parts" / MID_EPOCH_NAME
    resumed = scripted_trainer(tmp_path / "parts")
    history = resumed.resume_training(checkpoint, additional_epochs=2)
    assert history["train_losses"] == straight.history["train_losses"]
    assert same_weights(straight.model.state_dict(), resumed.model.state_dict())


def test_restoring_needs_the_plateau_schedule_and_early_stopping(tmp_path):
    with pytest.raises(ValueError, match="--scheduler plateau and an --early-stopping-patience"):
        TrainConfig(scheduler="cosine", restore_best_on_plateau=True).validate()
    with pytest.raises(ValueError, match="--early-stopping-patience"):
        TrainConfig(early_stopping_patience=None, restore_best_on_plateau=True).validate()
    with pytest.raises(ValueError, match="--plateau-patience must be at least 1"):
        TrainConfig(plateau_patience=0).validate()
    with pytest.raises(ValueError, match="scheduler_type='plateau'"):
        make_trainer(tmp_path, scheduler_type="cosine", restore_best_on_plateau=True)
    with pytest.raises(ValueError, match="give early_stopping_patience"):
        make_trainer(tmp_path, restore_best_on_plateau=True).train(1)


def test_a_patience_of_one_halves_the_rate_after_each_epoch_without_a_new_best(tmp_path):
    trainer = scripted_trainer(tmp_path, plateau_patience=1)
    history = trainer.train(4, early_stopping_patience=10)
    assert history["learning_rates"] == [0.01, 0.01, 0.005, 0.0025]


def test_the_settings_reach_the_model_card(tmp_path):
    tree = write_imdb_tree(tmp_path / "data", {"train": synthetic_reviews(60), "test": synthetic_reviews(20, seed=1)})
    run_training(TrainConfig(data_dir=str(tree), output_dir=str(tmp_path / "model"),
                             checkpoint_dir=str(tmp_path / "run"), epochs=1, batch_size=16, embedding_dim=8,
                             hidden_dim=8, n_layers=1, max_vocab_size=100, pretrain_lm_epochs=0, plateau_patience=2,
                             restore_best_on_plateau=True, quiet=True, tensorboard=False))
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "learning-rate schedule: plateau, halved after 2 epochs without a new best, each time from the best " \
           "epoch's weights" in card

"""--ngram-teacher: soft targets from an n-gram model that never saw the review it scores."""

import json
import logging

import numpy as np
import pytest
import torch

from src.config import TrainConfig, check_setting
from src.data.datasets import ReviewDataset, collate_batch
from src.exceptions import DataError
from src.models.ngram_model import NgramModel, out_of_fold_log_odds
from src.training.pipeline import _teacher_targets, run_training
from tests.helpers import make_trainer
from tests.test_ngram_model import pair_reviews


def own_word(index: int) -> str:
    """A word no other review has (letters only, so every tokenizer keeps it)."""
    return "qx" + "".join(chr(ord("a") + int(digit)) for digit in str(index))


def reviews_with_wrong_labels(count: int = 400):
    """Reviews whose word pair gives their sentiment, each with a word of its own; every tenth label is
    flipped. Returns (texts, labels, sentiments, flipped mask)."""
    texts, sentiments = pair_reviews(count, seed=0)
    texts = [f"{text} {own_word(index)}" for index, text in enumerate(texts)]
    flipped = np.arange(count) % 10 == 3
    labels = np.where(flipped, 1 - np.asarray(sentiments), sentiments)
    return texts, labels, np.asarray(sentiments), flipped


def test_out_of_fold_scores_follow_the_text_not_the_reviews_own_label():
    texts, labels, sentiments, flipped = reviews_with_wrong_labels()
    scores = out_of_fold_log_odds(texts, labels, folds=5, seed=0)
    assert np.all((scores[flipped] > 0) == (sentiments[flipped] == 1))  # no model saw the flipped review
    seen = NgramModel.fit(texts, labels).log_odds(texts)  # a model that saw them learns their own words
    toward_label = np.where(labels == 1, 1, -1)
    assert np.mean(seen[flipped] * toward_label[flipped]) > np.mean(scores[flipped] * toward_label[flipped]) + 0.5
    assert np.array_equal(scores, out_of_fold_log_odds(texts, labels, folds=5, seed=0))
    assert not np.array_equal(scores, out_of_fold_log_odds(texts, labels, folds=5, seed=1))  # other parts


def test_a_part_that_leaves_one_class_is_a_clear_error():
    texts, _ = pair_reviews(20, seed=0)
    with pytest.raises(DataError, match="too few of one class.*--ngram-teacher"):
        out_of_fold_log_odds(texts, [0] * 19 + [1], folds=5, seed=0)


def test_targets_mix_label_and_teacher_and_keep_the_labels_side():
    texts, labels, sentiments, flipped = reviews_with_wrong_labels()
    train = ReviewDataset([np.array([1], dtype=np.int32)] * len(texts), labels, texts)
    targets = _teacher_targets(TrainConfig(ngram_teacher=0.4), train)
    assert np.all(targets[labels == 1] > 0.6) and np.all(targets[labels == 0] < 0.4)
    wrong_teacher = flipped  # on the flipped reviews the teacher disagrees with the label
    distance = np.abs(targets - labels)
    assert distance[wrong_teacher].min() > 0.2 and distance[~wrong_teacher].mean() < 0.1
    train.targets = targets
    _, _, batch_labels = collate_batch([train[0], train[3]])
    assert batch_labels.tolist() == pytest.approx([targets[0], targets[3]])


def test_the_teacher_refuses_more_than_two_classes_and_weights_above_a_half():
    three = ReviewDataset([np.array([1], dtype=np.int32)] * 3, [0, 1, 2], ["a b", "c d", "e f"],
                          class_names=("bad", "fair", "good"))
    with pytest.raises(DataError, match="two-class.*3 classes"):
        _teacher_targets(TrainConfig(ngram_teacher=0.3), three)
    with pytest.raises(ValueError, match="--ngram-teacher must be at most 0.5"):
        check_setting("ngram_teacher", 0.6)


def positive_probability(trainer) -> float:
    """The tiny model's mean probability of the positive class on the positive training reviews."""
    trainer.model.eval()
    probabilities = []
    with torch.no_grad():
        for ids, lengths, labels in trainer.train_loader:
            probabilities.append(torch.sigmoid(trainer.model(ids, lengths))[labels > 0.5])
    return float(torch.cat(probabilities).mean())


def test_training_fits_the_soft_targets_and_counts_accuracy_on_the_labels_side(tmp_path):
    hard = make_trainer(tmp_path / "hard")
    hard.train(epochs=8)
    soft = make_trainer(tmp_path / "soft")
    dataset = soft.train_loader.dataset
    dataset.targets = np.where(dataset.labels == 1, 0.7, 0.3)  # every review's teacher undecided
    history = soft.train(epochs=8)
    assert positive_probability(hard) > 0.9
    assert 0.6 < positive_probability(soft) < 0.8
    assert history["train_accuracies"][-1] > 0.95  # correct = the logit on the label's side


def test_a_run_with_the_teacher_logs_it_and_saves_the_setting(imdb_tree, tmp_path, caplog):
    cfg = TrainConfig(data_dir=str(imdb_tree), output_dir=str(tmp_path / "model"),
                      checkpoint_dir=str(tmp_path / "run"), epochs=1, embedding_dim=16, hidden_dim=16, n_layers=1,
                      max_length=120, max_train_samples=1000, max_test_samples=200, pretrain_lm_epochs=0,
                      ngram_teacher=0.5, quiet=True, tensorboard=False)
    with caplog.at_level(logging.INFO, logger="src.training.pipeline"):
        metrics = run_training(cfg)
    line = next(record.getMessage() for record in caplog.records if "n-gram teacher" in record.getMessage())
    assert "of the 800 training reviews right out of fold" in line
    right = float(line.split("n-gram teacher: ")[1].split("%")[0])
    assert 60 < right < 100  # real reviews: the teacher knows something, not everything
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ngram_teacher"] == 0.5
    assert 0 < metrics["test"]["accuracy"] <= 1
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "an n-gram model's out-of-fold probabilities: weight 0.5" in card


def test_a_run_with_the_teacher_resumed_after_its_first_epoch_ends_as_an_uninterrupted_one(imdb_tree, tmp_path):
    """--resume fits the teacher again: its seeded folds and fits give the resumed epochs the same targets."""
    from src.utils.checkpoint_io import load_state

    def run(folder, epochs, resume=None):
        return run_training(TrainConfig(
            data_dir=str(imdb_tree), output_dir=str(tmp_path / folder / "model"),
            checkpoint_dir=str(tmp_path / folder / "run"), epochs=epochs, resume=resume, embedding_dim=16,
            hidden_dim=16, n_layers=1, max_length=80, max_train_samples=500, max_test_samples=50,
            pretrain_lm_epochs=0, ngram_teacher=0.3, quiet=True, tensorboard=False))

    straight = run("straight", 2)
    run("parts", 1)
    resumed = run("parts", 2, resume="auto")
    assert resumed["history"]["val_losses"] == straight["history"]["val_losses"]
    final = [load_state(tmp_path / folder / "run" / "checkpoint_epoch_002.pt")["model_state"]
             for folder in ("straight", "parts")]
    for name, value in final[0].items():
        assert torch.equal(value, final[1][name]), name

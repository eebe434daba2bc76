"""--label-smoothing: training's loss aims at targets moved toward all classes alike; validation's stays plain."""

import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from src.config import TrainConfig, check_setting
from src.training.pipeline import run_training
from src.training.trainer import label_smoothed
from tests.helpers import make_trainer, synthetic_reviews, write_imdb_tree


def test_two_classes_train_toward_one_minus_half_the_smoothing():
    logits, labels = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 1.0])
    smoothed = label_smoothed(nn.BCEWithLogitsLoss(), 0.2)
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([0.9, 0.1, 0.9]))
    assert torch.allclose(smoothed(logits, labels), expected)
    # the loss of a positive review is lowest where the model gives it 0.9, not 1
    best = torch.tensor([math.log(0.9 / 0.1)], requires_grad=True)
    smoothed(best, torch.ones(1)).backward()
    assert abs(float(best.grad)) < 1e-6


def test_several_classes_use_torchs_smoothing_and_keep_the_class_weights():
    weights = torch.tensor([1.0, 2.0, 0.5])
    logits, labels = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 2, 1, 0])
    smoothed = label_smoothed(nn.CrossEntropyLoss(weight=weights), 0.3)
    expected = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.3)
    assert torch.allclose(smoothed(logits, labels), expected)
    assert not torch.allclose(expected, F.cross_entropy(logits, labels, weight=weights))


def test_zero_keeps_the_loss_and_another_loss_or_too_much_smoothing_is_refused():
    plain = nn.BCEWithLogitsLoss()
    assert label_smoothed(plain, 0.0) is plain
    with pytest.raises(ValueError, match="label_smoothing works with nn.BCEWithLogitsLoss or nn.CrossEntropyLoss"):
        label_smoothed(nn.MSELoss(), 0.1)
    with pytest.raises(ValueError, match="--label-smoothing must be at most 0.5"):
        check_setting("label_smoothing", 0.6)


def logits_of(trainer, loader):
    trainer.model.eval()
    with torch.no_grad():
        return torch.cat([trainer.model(ids, lengths).float() for ids, lengths, _ in loader])


def test_smoothing_trains_a_less_confident_model_and_validation_reads_the_plain_loss(tmp_path):
    plain = make_trainer(tmp_path / "plain", learning_rate=0.03)
    smooth = make_trainer(tmp_path / "smooth", learning_rate=0.03, label_smoothing=0.2)
    plain.train(epochs=3)
    smooth.train(epochs=3)
    # the separable reviews' log-odds: far out without smoothing, near log(0.9 / 0.1) = 2.2 with 0.2
    confidence = [float(logits_of(trainer, trainer.train_loader).abs().mean()) for trainer in (plain, smooth)]
    assert confidence[0] > 4 and 1.5 < confidence[1] < 3
    labels = torch.cat([batch[2] for batch in smooth.val_loader]).float()
    plain_loss = F.binary_cross_entropy_with_logits(logits_of(smooth, smooth.val_loader), labels)
    assert smooth.evaluate_model(smooth.val_loader)["loss"] == pytest.approx(float(plain_loss), rel=1e-5)
    assert smooth.history["val_losses"][-1] == pytest.approx(float(plain_loss), rel=1e-5)


def test_the_command_line_setting_reaches_the_run_and_its_model_card(tmp_path):
    tree = write_imdb_tree(tmp_path / "data", {"train": synthetic_reviews(60), "test": synthetic_reviews(20, seed=1)})
    run_training(TrainConfig(data_dir=str(tree), output_dir=str(tmp_path / "model"),
                             checkpoint_dir=str(tmp_path / "run"), epochs=1, batch_size=16, embedding_dim=8,
                             hidden_dim=8, n_layers=1, max_vocab_size=100, pretrain_lm_epochs=0,
                             label_smoothing=0.1, quiet=True, tensorboard=False))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["label_smoothing"] == 0.1
    assert "label smoothing: 0.1" in (tmp_path / "model" / "MODEL_CARD.md").read_text()

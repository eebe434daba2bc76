"""Virtual adversarial training on unlabeled reviews (--vat-eps): the batches, the direction, the loss, the step."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from src.training.train_model import main, resolve_config
from src.training.adversarial import adversarial_perturbation, word_vector_rms
from src.training.virtual_adversarial import (UnlabeledBatches, direction_weights, prediction_divergence,
                                              rng_replayer)
from tests.helpers import assert_resume_repeats_training, make_trainer, synthetic_loaders, tiny_model
from tests.test_cli import SMALL


def _unlabeled(count: int = 50, seed: int = 5):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 30, size=int(rng.integers(3, 25))).astype(np.int32) for _ in range(count)]


def _rows(ids, lengths):
    return [ids[row, :length].tolist() for row, length in enumerate(lengths.tolist())]


def _vat_trainer(run_dir, eps=1.0, **kwargs):
    return make_trainer(run_dir, vat_eps=eps, unlabeled=UnlabeledBatches(_unlabeled(), 8, seed=3), **kwargs)


def test_unlabeled_batches_depend_on_the_step_alone_and_fit_the_labeled_length():
    batches = UnlabeledBatches(_unlabeled(), 8, seed=1)
    ids, lengths = batches.batch(epoch=2, step=7, length=10)
    again, _ = batches.batch(epoch=2, step=7, length=10)
    assert torch.equal(ids, again) and ids.shape[0] == 8 and int(lengths.max()) <= 10 == ids.shape[1]
    assert not torch.equal(ids, batches.batch(epoch=2, step=8, length=10)[0])
    shares = [UnlabeledBatches(_unlabeled(), 4, seed=1, rank=rank, world_size=2).batch(2, 7, 10) for rank in (0, 1)]
    assert sum((_rows(*share) for share in shares), []) == _rows(ids, lengths)  # two ranks share one process's draw
    assert (ids[torch.arange(ids.shape[1]) >= lengths.unsqueeze(1)] == 0).all()  # padded past each review
    with pytest.raises(ValueError, match="--unlabeled or use --vat-eps 0"):
        UnlabeledBatches([np.zeros(0, dtype=np.int32)], 8, seed=1)


def test_the_divergence_is_the_kl_of_the_two_predictions():
    clean, moved = torch.tensor([0.3, -1.2]), torch.tensor([1.0, -0.2])
    p, q = torch.sigmoid(clean), torch.sigmoid(moved)
    expected = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    assert float(prediction_divergence(clean, moved)) == pytest.approx(float(expected), rel=1e-5)
    assert float(prediction_divergence(clean, clean)) == pytest.approx(0.0, abs=1e-7)
    clean3, moved3 = torch.tensor([[0.1, 2.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.5]])
    p3, q3 = clean3.softmax(-1), moved3.softmax(-1)
    assert float(prediction_divergence(clean3, moved3)) == pytest.approx(float((p3 * (p3 / q3).log()).sum()), rel=1e-5)


@pytest.mark.parametrize("classes", [1, 3])
def test_the_direction_moves_the_prediction_more_than_random_shifts_of_the_same_norm(classes):
    torch.manual_seed(0)
    model = tiny_model(dropout=0.0, embedding_dropout=0.0, output_dim=classes).eval()
    ids, lengths = UnlabeledBatches(_unlabeled(), 16, seed=2).batch(1, 1, 20)
    shift = torch.zeros(*ids.shape, 8, requires_grad=True)
    clean = model(ids, lengths, embedding_shift=shift)
    (gradient,) = torch.autograd.grad((clean * direction_weights(clean)).sum(), shift)
    norm = 0.5 * word_vector_rms(model.embedding)
    padding = (torch.arange(ids.shape[1]) >= lengths.unsqueeze(1)).unsqueeze(-1)  # [B, T, 1]
    with torch.no_grad():
        along = prediction_divergence(clean, model(ids, lengths,
                                                   embedding_shift=adversarial_perturbation(gradient, norm)))
        randoms = [prediction_divergence(clean, model(ids, lengths, embedding_shift=adversarial_perturbation(
            torch.randn_like(gradient).masked_fill(padding, 0), norm))) for _ in range(5)]
    assert along > 3 * max(randoms)
    if classes == 1:  # one output: exactly the gradient of the logit
        (logit_gradient,) = torch.autograd.grad(model(ids, lengths, embedding_shift=shift).sum(), shift)
        torch.testing.assert_close(gradient, logit_gradient)


def test_both_passes_see_the_same_dropout_masks(tmp_path):
    """With a vanishing eps the divergence is zero only if the moved pass replays the clean pass's dropout."""
    trainer = _vat_trainer(tmp_path / "run", eps=1e-9, model={"dropout": 0.5, "embedding_dropout": 0.5},
                           device="cpu", precision="float32")
    trainer.model.train()
    assert float(trainer._virtual_adversarial_loss(length=20, step=1).detach()) < 1e-9
    replay = rng_replayer(torch.device("cpu"))
    first = torch.rand(3)
    replay()
    assert torch.equal(first, torch.rand(3))


def test_the_step_adds_the_divergence_on_the_unlabeled_batch(tmp_path):
    """The trainer's gradients equal those of the labeled loss plus the divergence computed by hand."""
    eps = 0.7
    trainer = _vat_trainer(tmp_path / "run", eps=eps, gradient_clip=0, device="cpu", precision="float32",
                           model={"dropout": 0.0, "embedding_dropout": 0.0})
    model = trainer.model
    ids, lengths, labels = next(iter(synthetic_loaders(seed=3)[0]))
    nn.functional.binary_cross_entropy_with_logits(model(ids, lengths), labels).backward()
    u_ids, u_lengths = trainer.unlabeled.batch(trainer.epoch + 1, 1, ids.shape[1])
    shift = torch.zeros(*u_ids.shape, 8, requires_grad=True)
    clean = model(u_ids, u_lengths, embedding_shift=shift)
    (gradient,) = torch.autograd.grad(clean.sum(), shift)
    perturbation = adversarial_perturbation(gradient, eps * word_vector_rms(model.embedding))
    moved = model(u_ids, u_lengths, embedding_shift=perturbation)
    prediction_divergence(clean, moved).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    trainer.train_step(ids, lengths, labels, step=1, optimizer_step=False)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


def test_virtual_adversarial_training_learns_and_resumes_exactly(tmp_path):
    """eps 0.1: these reviews are 3-25 words long, so a word vector per review would move each word far."""
    straight = assert_resume_repeats_training(lambda run: _vat_trainer(run, eps=0.1, seed=1), tmp_path)
    assert straight.history["val_accuracies"][-1] > 0.9
    plain = make_trainer(tmp_path / "plain", seed=1)
    plain.train(epochs=3)
    assert any(not torch.equal(value, plain.model.state_dict()[name])  # it changed the training
               for name, value in straight.model.state_dict().items())


def test_vat_eps_needs_unlabeled_reviews_and_a_valid_value(tmp_path):
    with pytest.raises(ValueError, match="vat_eps needs unlabeled reviews"):
        make_trainer(tmp_path / "run", vat_eps=1.0)
    assert resolve_config(["--vat-eps", "0.5"]).vat_eps == 0.5
    with pytest.raises(SystemExit):
        resolve_config(["--vat-eps", "-1"])


def test_the_cli_trains_on_the_unlabeled_reviews_and_says_so(tmp_path, imdb_tree, caplog):
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("a fine film with a dull end\nthe worst acting of the year\n" * 20, encoding="utf-8")
    args = ["--data-dir", str(imdb_tree), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), "--epochs", "1", *SMALL, "--vat-eps", "1", "--unlabeled", str(unlabeled),
            "--pretrain-lm-epochs", "0"]
    with caplog.at_level("INFO"):
        assert main(args) == 0
    counts = re.search(r"virtual adversarial training: (\d+) unlabeled reviews \((\d+) of them the training",
                       caplog.text)
    assert counts and int(counts[1]) == 40 + int(counts[2]) and f"data: {counts[2]} train" in caplog.text
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "virtual adversarial training on unlabeled reviews: eps 1.0" in card

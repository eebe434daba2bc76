"""Adversarial training on the word vectors (--adversarial-eps): the perturbation and the step."""

import json

import pytest
import torch
from torch import nn

from src.config import TrainConfig
from src.training import adversarial, pipeline
from src.training.adversarial import adversarial_perturbation, default_adversarial_eps, word_vector_rms
from tests.helpers import (assert_resume_repeats_training, make_trainer, synthetic_loaders, synthetic_reviews,
                           tiny_model, write_imdb_tree)


def _batch():
    ids, lengths, labels = next(iter(synthetic_loaders(seed=3)[0]))
    return ids, lengths, labels


def _loss(model, ids, lengths, labels, shift):
    return nn.functional.binary_cross_entropy_with_logits(model(ids, lengths, embedding_shift=shift), labels)


def test_perturbation_has_the_asked_norm_and_points_up_the_loss():
    torch.manual_seed(0)
    model = tiny_model(dropout=0.0, embedding_dropout=0.0).eval()
    ids, lengths, labels = _batch()
    shift = torch.zeros(*ids.shape, 8, requires_grad=True)
    _loss(model, ids, lengths, labels, shift).backward()
    perturbation = adversarial_perturbation(shift.grad, 0.05)
    assert perturbation.flatten(1).norm(dim=1) == pytest.approx([0.05] * len(ids), rel=1e-5)
    cosine = nn.functional.cosine_similarity(perturbation.flatten(1), shift.grad.flatten(1), dim=1)
    assert cosine == pytest.approx([1.0] * len(ids), abs=1e-5)
    padding = torch.arange(ids.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)  # [B, T]
    assert perturbation[padding].abs().max() < 1e-6  # only real words move
    with torch.no_grad():
        clean = _loss(model, ids, lengths, labels, None)
        adversarial = _loss(model, ids, lengths, labels, perturbation)
        noise = torch.randn_like(perturbation) * ~padding.unsqueeze(-1)
        noise = noise * (0.05 / noise.flatten(1).norm(dim=1)).view(-1, 1, 1)
        random = _loss(model, ids, lengths, labels, noise)
    assert adversarial > clean and adversarial - clean > 5 * abs(random - clean)


def test_a_zero_gradient_gives_no_perturbation_and_the_unit_is_the_rms_word_norm():
    assert adversarial_perturbation(torch.zeros(2, 3, 4), 1.0).abs().max() == 0
    embedding = nn.Embedding(2, 2)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # norms 5 and 0
    assert float(word_vector_rms(embedding)) == pytest.approx((25 / 2) ** 0.5)


def test_adversarial_step_trains_on_the_clean_plus_the_perturbed_loss(tmp_path):
    """The trainer's gradients equal those of loss(x) + loss(x + eps * rms * g/||g||) computed by hand."""
    eps = 0.5
    trainer = make_trainer(tmp_path / "run", gradient_clip=0, model={"dropout": 0.0, "embedding_dropout": 0.0},
                           adversarial_eps=eps, device="cpu", precision="float32")
    model, ids, (lengths, labels) = trainer.model, *(lambda b: (b[0], b[1:]))(_batch())
    shift = torch.zeros(*ids.shape, 8, requires_grad=True)
    clean = _loss(model, ids, lengths, labels, shift)
    clean.backward()
    perturbation = adversarial_perturbation(shift.grad, eps * word_vector_rms(model.embedding))
    _loss(model, ids, lengths, labels, perturbation).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss, _, _ = trainer.train_step(ids, lengths, labels, optimizer_step=False)
    assert loss == pytest.approx(float(clean.detach()))  # the reported loss is the clean one
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


def test_adversarial_training_learns_and_resumes_exactly(tmp_path):
    straight = assert_resume_repeats_training(lambda run: make_trainer(run, seed=1, adversarial_eps=1.0), tmp_path)
    assert straight.history["val_accuracies"][-1] > 0.9


def test_adversarial_eps_is_checked_and_a_resume_may_not_change_it():
    with pytest.raises(ValueError, match="--adversarial-eps"):
        TrainConfig.from_settings({"adversarial_eps": "-1"})
    config = TrainConfig.from_settings({"adversarial_eps": "0.5"})
    changed, _ = config.settle_resume({**vars(TrainConfig()), "adversarial_eps": 1.0})
    assert changed == {"--adversarial-eps": (1.0, 0.5)}


def test_the_default_eps_is_one_where_a_step_is_cheap_and_zero_on_a_cpu_in_float32(monkeypatch):
    assert default_adversarial_eps(torch.device("cuda"), "auto") == 1.0
    monkeypatch.setattr(adversarial, "cpu_computes_in_bfloat16", lambda precision: precision != "float32")
    assert default_adversarial_eps(torch.device("cpu"), "auto") == 1.0  # a CPU with bfloat16 instructions
    assert default_adversarial_eps(torch.device("cpu"), "float32") == 0.0
    monkeypatch.setattr(adversarial, "cpu_computes_in_bfloat16", lambda precision: False)
    assert default_adversarial_eps(torch.device("cpu"), "auto") == 0.0  # one without


def test_a_run_saves_the_default_eps_it_resolved_and_its_resume_keeps_it_on_another_machine(tmp_path, monkeypatch):
    """The defaults train with eps 1 where the machine makes it cheap; a resume on a machine whose default is
    0 continues with 1: its validation losses are those of a run given --adversarial-eps 1 throughout."""
    from src.training.pipeline import run_training

    tree = write_imdb_tree(tmp_path / "data", {"train": synthetic_reviews(60), "test": synthetic_reviews(10, seed=1)})

    def run(name, epochs, **settings):
        return run_training(TrainConfig(data_dir=str(tree), output_dir=str(tmp_path / name / "model"),
                                        checkpoint_dir=str(tmp_path / name / "run"), epochs=epochs, batch_size=16,
                                        embedding_dim=8, hidden_dim=8, n_layers=1, max_vocab_size=100,
                                        pretrain_lm_epochs=0, quiet=True, tensorboard=False, **settings))

    def saved_eps(name):
        return json.loads((tmp_path / name / "run" / "config.json").read_text())["adversarial_eps"]

    monkeypatch.setattr(pipeline, "default_adversarial_eps", lambda device, precision: 1.0)  # as on a GPU
    run("defaults", 1)
    assert saved_eps("defaults") == 1.0
    assert "adversarial training on the embeddings: eps 1.0" in (tmp_path / "defaults/model/MODEL_CARD.md").read_text()
    monkeypatch.setattr(pipeline, "default_adversarial_eps", lambda device, precision: 0.0)  # a float32 CPU's
    resumed = run("defaults", 2, resume="auto")
    assert saved_eps("defaults") == 1.0
    given, plain = run("given", 2, adversarial_eps=1.0), run("plain", 2)
    assert saved_eps("plain") == 0.0
    assert resumed["history"]["val_losses"] == given["history"]["val_losses"]
    assert resumed["history"]["val_losses"] != plain["history"]["val_losses"]

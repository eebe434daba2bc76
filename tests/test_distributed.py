"""Two-process training with torchrun (gloo on CPU) on real reviews, and resuming it with one process."""

import json
import logging
import shutil
import subprocess
import sys

import pytest
import torch

from src.training.pipeline import configure_logging
from src.utils.checkpoint_io import load_state
from tests.helpers import REPO_ROOT, train_script_arguments, write_review_csvs

pytestmark = pytest.mark.slow  # subprocesses

ACCURACY_TOLERANCE = 0.08  # two runs see the same reviews in another order; they may differ by this much
SETTINGS = ["--embedding-dim", "32", "--hidden-dim", "32", "--max-length", "100", "--epochs", "3",
            "--learning-rate", "0.005", "--max-vocab-size", "10000", "--pretrain-lm-epochs", "0", "--quiet"]


@pytest.fixture(scope="module")
def reviews(imdb_tree, tmp_path_factory):
    """Enough real reviews for three epochs to learn something: the runs that compare accuracies read them."""
    return write_review_csvs(imdb_tree, tmp_path_factory.mktemp("ddp-reviews"), 2000, 400)


@pytest.fixture(scope="module")
def few_reviews(imdb_tree, tmp_path_factory):
    """For the runs that check what each rank does, not what the model learns: a third of the time."""
    return write_review_csvs(imdb_tree, tmp_path_factory.mktemp("ddp-few-reviews"), 600, 200)


def launch(data, root, processes, *extra):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    return subprocess.run([*launcher, *train_script_arguments(data, root / "model", root / "run", *SETTINGS, *extra)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def train(data, root, processes, *extra):
    result = launch(data, root, processes, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((root / "model" / "metrics.json").read_text()), result


# adversarial training, the step with most to share between processes: each process perturbs the word vectors
# of its own shard, and both backward passes are averaged; the levers' run below runs without it
ADVERSARIAL = ("--adversarial-eps", "0.5")


@pytest.fixture(scope="module")
def two_process_run(reviews, tmp_path_factory):
    """Three epochs on 2 processes of 16 reviews a batch, adversarial training on: (folder, metrics, completed
    process)."""
    root = tmp_path_factory.mktemp("two")
    metrics, result = train(reviews, root, 2, "--batch-size", "16", *ADVERSARIAL)
    return root, metrics, result


def test_two_processes_match_one(reviews, two_process_run, tmp_path):
    # the same effective batch: 2 processes x 16 reviews against 1 process x 32
    root, two, result = two_process_run
    one, _ = train(reviews, tmp_path / "one", 1, "--batch-size", "32", *ADVERSARIAL)
    assert abs(two["test"]["accuracy"] - one["test"]["accuracy"]) <= ACCURACY_TOLERANCE
    assert two["test"]["accuracy"] > 0.55 and two["test"]["n_examples"] == 400
    assert json.loads((root / "run" / "config.json").read_text())["adversarial_eps"] == 0.5
    assert result.stdout.count("test accuracy") == 1  # rank 0 reports, once
    run = root / "run"
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*.pt")) == [
        "checkpoint_epoch_001.pt", "checkpoint_epoch_002.pt", "checkpoint_epoch_003.pt"]
    log = (run / "train.log").read_text()
    assert log.count("epoch 1/3") == 1 and log.count("epoch 3/3") == 1
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]


def test_two_process_run_resumed_with_one_process(reviews, two_process_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(two_process_run[0], run)
    metrics, _ = train(reviews, run, 1, "--batch-size", "16", "--epochs", "4", "--resume", "auto",
                       *ADVERSARIAL)
    assert metrics["history"]["epochs_completed"] == 4 and len(metrics["history"]["val_losses"]) == 4
    assert metrics["history"]["val_losses"][:3] == two_process_run[1]["history"]["val_losses"]


def test_the_accuracy_levers_and_weight_averaging_run_under_two_processes(few_reviews, tmp_path):
    """Per-direction stacks pretrained as language models, ULMFiT's three pieces, the n-gram teacher, label
    smoothing, virtual adversarial training and weight averaging in one two-process run (one run, because each
    start of two processes costs seconds): every rank pretrains the same model and fits the same teacher, and
    gradual unfreezing drops the same gradients on each after they are averaged. Virtual adversarial training
    draws each rank's share of the unlabeled batch (here the training reviews) and adds two passes, one of them
    through DDP. --average-epochs: every rank scores its shard of validation for each average (rank 0 alone
    would wait for the others forever); --min-delta 10 makes epoch 1 the best, so epochs 2 and 3 are averaged
    with it, and neither average counts as better. (Three epochs are too few for this recipe to learn; what is
    checked is that it runs and freezes as it says.)"""
    metrics, result = train(few_reviews, tmp_path, 2, "--batch-size", "16", "--stacking", "per_direction",
                            "--pretrain-lm-epochs", "0.5", "--scheduler", "slanted_triangular",
                            "--layer-lr-decay", "2.6", "--gradual-unfreezing", "--ngram-teacher", "0.2",
                            "--label-smoothing", "0.1", "--vat-eps", "0.1", "--min-delta", "10",
                            "--average-epochs", "3")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["stacking"], saved["layer_lr_decay"], saved["gradual_unfreezing"], saved["ngram_teacher"],
            saved["label_smoothing"]) == ("per_direction", 2.6, True, 0.2, 0.1)
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("language-model pretraining:") >= 1 and log.count("n-gram teacher:") == 1  # rank 0 logs
    assert "virtual adversarial training: 480 unlabeled reviews (480 of them the training reviews)" in log
    assert log.count("average of epochs 1-2:") == 1 and log.count("average of epochs 1-3:") == 1
    assert metrics["best_epoch"] == 1 and metrics["final_weights"] == {"epochs": [1]}
    assert result.stdout.count("test accuracy") == 1 and metrics["test"]["n_examples"] == 200
    assert metrics["history"]["epochs_completed"] == 3
    # gradual unfreezing across the ranks: the classifier trains from epoch 1, the top layer from epoch 2, the
    # first from epoch 3, and the (pretrained) embedding not yet
    names = ["checkpoint_pretraining.pt"] + [f"checkpoint_epoch_{epoch:03d}.pt" for epoch in (1, 2, 3)]
    pretrained, *epochs = [load_state(tmp_path / "run" / name)["model_state"] for name in names]

    def first_changed(name):  # the epoch after which ``name`` first differs from its pretrained value
        changed = [epoch for epoch, weights in enumerate(epochs, 1) if not torch.equal(weights[name], pretrained[name])]
        return changed[0] if changed else None

    assert first_changed("layers.1.1.weight_hh_l0") == 2 and first_changed("layers.0.0.weight_hh_l0") == 3
    assert first_changed("fc.weight") == 1 and first_changed("embedding.weight") is None


def test_restoring_the_best_weights_at_a_halving_runs_under_two_processes(few_reviews, tmp_path):
    """--restore-best-on-plateau under torchrun: --min-delta 10 keeps epoch 1 the best, so the plateau schedule
    (patience 1) halves the rate after epoch 2 and every rank starts epoch 3 from its own copy of epoch 1's
    weights (the ranks must agree on it, or DDP would average the gradients of different models). Rank 0's
    checkpoints show it: epoch 3, at half the rate, ends nearer epoch 1's weights than epoch 2 does."""
    metrics, _ = train(few_reviews, tmp_path, 2, "--batch-size", "16", "--plateau-patience", "1",
                       "--restore-best-on-plateau", "--min-delta", "10")
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("epoch 3 starts from the weights of epoch 1, the best") == 1  # rank 0 logs
    assert metrics["best_epoch"] == 1 and metrics["history"]["learning_rates"] == [0.005, 0.005, 0.0025]
    first, second, third = (load_state(tmp_path / "run" / f"checkpoint_epoch_{epoch:03d}.pt")["model_state"]
                            for epoch in (1, 2, 3))
    name = "fc.weight"
    assert (third[name] - first[name]).norm() < (second[name] - first[name]).norm()
    assert metrics["test"]["n_examples"] == 200


def test_pretraining_stopped_under_two_processes_continues_under_two(few_reviews, tmp_path):
    """A time limit of 0.06 s has passed by the end of the first step of language-model pretraining on every
    rank, so the ranks agree to stop there and rank 0 saves checkpoint_pretraining.pt; resumed without the
    limit, both ranks load it and pretrain the remaining steps before the epoch."""
    stopped = launch(few_reviews, tmp_path, 2, "--batch-size", "16", "--pretrain-lm-epochs", "1", "--epochs", "1",
                     "--max-minutes", "0.001")
    assert stopped.returncode != 0 and "ran out during language-model pretraining, at step 1 of" in stopped.stderr
    saved = load_state(tmp_path / "run" / "checkpoint_pretraining.pt")["pretraining"]
    assert saved["step"] == 1 and saved["total_steps"] > 1
    assert not list((tmp_path / "run").glob("checkpoint_epoch_*.pt"))
    metrics, _ = train(few_reviews, tmp_path, 2, "--batch-size", "16", "--pretrain-lm-epochs", "1", "--epochs", "1",
                       "--resume", "auto", "--max-minutes", "none")
    assert metrics["lm_pretraining"]["steps"] == saved["total_steps"]
    assert metrics["history"]["epochs_completed"] == 1 and metrics["test"]["n_examples"] == 200
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count(f"language-model pretraining: {saved['total_steps']} steps") == 1  # rank 0 logs, once


def test_only_rank_0_prints_warnings(tmp_path, capsys):
    """Every rank reads the same data: a warning about them (names alike, test texts that are training texts)
    came once per rank. The other ranks print errors only, and write no log file."""
    configure_logging(tmp_path, quiet=False, main_process=False)
    logging.getLogger("src.data.loaders").warning("said by every rank")
    logging.getLogger("src.training").error("this rank failed")
    err = capsys.readouterr().err
    assert "this rank failed" in err and "said by every rank" not in err
    assert not list(tmp_path.iterdir())

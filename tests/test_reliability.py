"""Crash safety, exact mid-epoch resume, locking, full disks, hostile files and random input."""

import copy
import errno
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.data import TextPreprocessor, load_imdb
from src.inference import SentimentPredictor
from src.exceptions import CheckpointError, DataError, TrainingError, TrainingInterrupted
from src.training import CheckpointManager, GloVeLoader
from src.utils.checkpoint_io import load_state, save_state
from src.training.trainer import MID_EPOCH_NAME
from src.training.train_model import main
from tests.helpers import REPO_ROOT, interrupt_at, make_trainer, tiny_model


@pytest.mark.parametrize("options", [{}, {"scheduler_type": "slanted_triangular", "layer_lr_decay": 2.6,
                                          "gradual_unfreezing": True, "epochs": 2, "model": {"n_layers": 2}}], ids=["defaults", "ulmfit"])
def test_signal_mid_epoch_then_resume_equals_uninterrupted(tmp_path, options):
    straight = make_trainer(tmp_path / "straight", seed=2, **copy.deepcopy(options))
    expected = straight.train(epochs=2)
    stopped = make_trainer(tmp_path / "parts", seed=2, **copy.deepcopy(options))
    interrupt_at(stopped, 4)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM in epoch 1 after 4 of 12 batches") as info:
        stopped.train(epochs=2)
    assert info.value.signum == signal.SIGTERM and info.value.checkpoint.endswith(MID_EPOCH_NAME)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    resumed = make_trainer(tmp_path / "parts", seed=7, data_seed=2, **copy.deepcopy(options))
    history = resumed.resume_training(tmp_path / "parts" / MID_EPOCH_NAME, additional_epochs=2)
    assert history["train_losses"] == expected["train_losses"]
    assert history["val_losses"] == expected["val_losses"]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert not (tmp_path / "parts" / MID_EPOCH_NAME).exists()  # superseded by the epoch checkpoints
    assert [group["lr"] for group in resumed.optimizer.param_groups] == \
        [group["lr"] for group in straight.optimizer.param_groups]


@pytest.mark.slow
def test_second_run_on_the_same_folder_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from src.training.run_control import RunLock\n"
         f"with RunLock({str(tmp_path)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (tmp_path / "config.json").write_text("the running run's settings")
        trainer = make_trainer(tmp_path)
        with pytest.raises(TrainingError, match=f"another run \\(process {holder.pid}\\) is training"):
            trainer.train(epochs=1)
        assert main(["--data-dir", str(tmp_path / "nowhere"), "--checkpoint-dir", str(tmp_path), "--quiet"]) == 1
        assert (tmp_path / "config.json").read_text() == "the running run's settings"
    finally:
        holder.communicate("", timeout=30)
    assert trainer.train(epochs=1)["epochs_completed"] == 1  # free again


def test_full_disk_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    trainer.train(epochs=1)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(TrainingError, match="No space left on device.*earlier checkpoints are kept"):
        trainer.train(epochs=1)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_checkpoint_folder_fails_at_start(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    trainer = make_trainer(tmp_path / "file" / "run")
    with pytest.raises(TrainingError, match="cannot write checkpoints to .*choose another --checkpoint-dir"):
        trainer.train(epochs=1)
    with pytest.raises(TrainingError, match=r"file \(it is a file, not a folder\); choose another --checkpoint-dir"):
        make_trainer(tmp_path / "file").train(epochs=1)


def test_gpu_out_of_memory_message(tmp_path):
    trainer = make_trainer(tmp_path)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer.train_step = out_of_memory
    with pytest.raises(TrainingError, match="smaller --batch-size .*--accumulation-steps"):
        trainer.train(epochs=1)


def test_detect_anomaly_option_trains(tmp_path):
    assert make_trainer(tmp_path, detect_anomaly=True).train(epochs=1)["epochs_completed"] == 1


def test_bit_flips_in_a_checkpoint_are_detected(tmp_path):
    path = save_state(tmp_path / "c.pt", {"model_state": {"w": torch.randn(200_000)}, "epoch": 3})
    data = path.read_bytes()
    for position in np.linspace(0.2, 0.8, 12).tolist():
        damaged = bytearray(data)
        damaged[int(len(data) * position)] ^= 0x04
        (tmp_path / "d.pt").write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match="damaged"):
            load_state(tmp_path / "d.pt")


def _outside_name(state, victim):
    state["checkpoint_manager"]["entries"].append({**state["checkpoint_manager"]["entries"][0], "file": victim})


def _short_adam_buffer(state, victim):
    state["optimizer_state"]["state"][0]["exp_avg"] = torch.zeros(3)


CRAFTED = {  # how the checkpoint is changed, what the refusal says
    "a registry name outside the folder": (_outside_name, "is not named checkpoint_epoch_001.pt"),
    "an absolute registry name": (lambda state, victim: _outside_name(state, str(victim)),
                                  "is not named checkpoint_epoch_001.pt"),
    "a best checkpoint outside the folder": (
        lambda state, victim: state["checkpoint_manager"].update(best_path=str(victim)), "a path inside the"),
    "an Adam buffer shorter than its parameter": (_short_adam_buffer, r"'exp_avg' of a parameter of shape"),
    "a history that is not a list": (lambda state, victim: state["history"].update(train_losses="abc"),
                                     "train_losses must be a list of 1 numbers"),
    "a scalar Adam buffer": (lambda state, victim: state["optimizer_state"]["state"][0].update(
        exp_avg=torch.tensor(0.0)), r"'exp_avg' of a parameter of shape \(30, 8\) is a torch.float32 tensor of shape"),
    "an Adam buffer that strides over one element": (lambda state, victim: state["optimizer_state"]["state"][0].update(
        exp_avg=torch.zeros(1).expand(30, 8)), r"'exp_avg' of a parameter .* \(contiguous: False\)"),
    "an Adam buffer that is a number": (lambda state, victim: state["optimizer_state"]["state"][0].update(
        exp_avg=0.0), "its optimizer's 'exp_avg' is 0.0, not a tensor"),
    "an Adam buffer missing": (lambda state, victim: state["optimizer_state"]["state"][0].pop("exp_avg_sq"),
                               "its optimizer's state of a parameter lacks exp_avg_sq"),
    "betas that are not numbers": (lambda state, victim: state["optimizer_state"]["param_groups"][0].update(
        betas=("a", "b")), r"its optimizer's 'betas' is \('a', 'b'\), where this one's is \(0.9, 0.999\)"),
    "a best epoch the run never had": (lambda state, victim: state["best_tracker"].update(best_epoch=10**6),
                                       r"its best epoch \(1000000\) is not one of its 1 epochs"),
    "a negative epoch": (lambda state, victim: state.update(epoch=-5), "epoch must be a whole number"),
    "weights that are not numbers": (lambda state, victim: state["model_state"]["fc.bias"].fill_(float("nan")),
                                     "fc.bias holds values that are not finite"),
    "an epoch its history does not have": (lambda state, victim: state.update(epoch=10**18),
                                           r"its epoch \(1000000000000000000\) and its history \(1 epochs\)"),
}


@pytest.mark.parametrize("craft", CRAFTED, ids=list(CRAFTED))
def test_a_crafted_checkpoint_is_refused_before_it_loads(tmp_path, craft):
    """A checkpoint's registry names the files that pruning deletes, and torch loads optimizer buffers unchecked
    (its fused kernel then reads past a short one: a crash or all the memory): both are checked first, with the
    counters and the history."""
    tamper, message = CRAFTED[craft]
    make_trainer(tmp_path / "run").train(epochs=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    state = load_state(tmp_path / "run" / "checkpoint_epoch_001.pt")
    tamper(state, victim if craft == "an absolute registry name" else "../victim.txt")
    crafted = save_state(tmp_path / "crafted.pt", state)
    trainer = make_trainer(tmp_path / "other", max_checkpoints=1, save_best_n=1)
    weights = copy.deepcopy(trainer.model.state_dict())
    with pytest.raises(CheckpointError, match=message):
        trainer.resume_training(crafted, additional_epochs=2)
    assert victim.read_text() == "keep me"
    # nothing of it was loaded: the trainer is as it was built
    assert trainer.epoch == 0 and trainer.history["epochs_completed"] == 0 and trainer.checkpoint_manager.entries == []
    assert all(torch.equal(value, weights[name]) for name, value in trainer.model.state_dict().items())


def test_checkpoints_the_api_names_itself_resume(tmp_path):
    """The registry's rules let through what the project writes: an epoch-0 checkpoint of the manager, and a best
    checkpoint that ``save_checkpoint`` puts in a subfolder."""
    manager = CheckpointManager(tmp_path / "plain")
    manager.save_checkpoint(tiny_model(), None, 0, 1.0, 0.9, 0.5)
    assert [entry["epoch"] for entry in CheckpointManager(tmp_path / "plain").entries] == [0]
    trainer = make_trainer(tmp_path / "run")
    trainer.train(epochs=1)
    (tmp_path / "run" / "keep").mkdir()
    trainer.save_checkpoint("keep/final.pt", is_best=True)
    assert CheckpointManager(tmp_path / "run").best_path == "keep/final.pt"
    resumed = make_trainer(tmp_path / "run")
    resumed.resume_training(tmp_path / "run" / "keep" / "final.pt", additional_epochs=1)
    assert resumed.epoch == 2


def test_malicious_glove_zip_writes_only_the_requested_member(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "glove.6B.zip", "w") as bundle:
        bundle.writestr("../../evil.txt", "owned")
        bundle.writestr("/tmp/evil-absolute.txt", "owned")
        bundle.writestr("glove.6B.50d.txt", "the " + " ".join(["0.1"] * 50) + "\n")
    path = GloVeLoader(cache, base_url="http://127.0.0.1:9").download_glove("6B", "50d")
    assert path == cache / "glove.6B.50d.txt"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["glove.6B.50d.txt", "glove.6B.zip"]


_PROCESSOR = TextPreprocessor(max_length=50).build_vocab(["a great film", "awful plot", "I didn't like it!"])
_PREDICTOR = SentimentPredictor(tiny_model(vocab_size=_PROCESSOR.vocab_size), _PROCESSOR, device="cpu")


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=3000))
def test_random_text_through_preprocessing_and_prediction(text):
    results = _PREDICTOR.predict_batch([text, text * 3, ""], batch_size=2)
    assert [r["label"] in ("positive", "negative") for r in results] == [True] * 3
    assert all(0.0 <= r["probability"] <= 1.0 for r in results)
    assert _PROCESSOR.decode(_PROCESSOR.encode(text)).count("<pad>") == 0


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=5000))
def test_random_bytes_decoded_as_text_are_classified(raw):
    result = _PREDICTOR.predict(raw.decode("utf-8", errors="replace"))
    assert 0.0 <= result["probability"] <= 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2000))
def test_random_bytes_as_a_csv_file(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("csv")
    (folder / "train.csv").write_bytes(raw)
    try:
        reviews = load_imdb(folder, "train")
    except DataError:
        return
    assert len(reviews.texts) == len(reviews.labels) > 0 and set(reviews.labels) == {0, 1}


def test_signal_during_validation_stops_after_the_epoch_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path)
    evaluate = trainer.evaluate_model

    def evaluate_then_signal(loader):
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(loader)

    trainer.evaluate_model = evaluate_then_signal
    with pytest.raises(TrainingInterrupted, match="stopped by SIGINT after epoch 1; saved .*checkpoint_epoch_001.pt"):
        trainer.train(epochs=3)
    assert trainer.epoch == 1 and load_state(tmp_path / "checkpoint_epoch_001.pt")["epoch"] == 1

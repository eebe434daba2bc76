"""Full disks, unwritable folders, outputs that are not regular files, and stops after training:
one clear line, nothing half-written, nothing good replaced (issue: reliability)."""

import errno
import os
import resource
import signal
import threading

import pytest

from src.exceptions import TrainingError
from src.inference import evaluate as evaluate_module
from src.inference.evaluate import main as evaluate_main
from src.inference.predict import main as predict_main
from src.models.ngram_model import NgramModel
from src.training import run_control
from src.training.train_model import main as train_main
from src.utils.io import folders_removed_on_failure
from tests.helpers import make_trainer, train_script_arguments

SMALL = ["--embedding-dim", "16", "--hidden-dim", "8", "--max-length", "80", "--batch-size", "32", "--epochs", "1",
         "--pretrain-lm-epochs", "0", "--quiet", "--no-tensorboard"]


def train_args(data, root, *extra):
    """train_model.main's arguments (the script's own path left out)."""
    return train_script_arguments(data, root / "model", root / "run", *SMALL, *extra)[1:]


def test_a_real_file_size_limit_gives_one_line_and_keeps_the_earlier_checkpoints(tmp_path):
    """torch reports a short write as RuntimeError (not OSError); the trainer turns it into one line."""
    trainer = make_trainer(tmp_path)
    trainer.train(epochs=1)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))
    try:
        with pytest.raises(TrainingError, match="could not write the checkpoint of epoch 2 .*earlier checkpoints "
                                                "are kept.*--resume auto"):
            trainer.train(epochs=1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_room_for_a_checkpoint_is_refused_before_any_work(csv_reviews, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_control.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    assert train_main(train_args(csv_reviews, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MB free but a checkpoint needs about" in err and "--checkpoint-dir" in err
    assert not list((tmp_path / "run").glob("*.pt")) and not (tmp_path / "model").exists()


def test_an_unwritable_output_folder_is_refused_at_the_start(csv_reviews, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    args = train_args(csv_reviews, tmp_path)
    args[args.index("--output-dir") + 1] = str(tmp_path / "file" / "model")
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the model directory to" in err and "--output-dir" in err
    assert not (tmp_path / "run").exists()  # the checkpoint folder this run made, with its lock and log, is gone


def test_a_run_that_cannot_take_the_lock_leaves_the_folder_to_the_run_that_holds_it(csv_reviews, tmp_path,
                                                                                    monkeypatch, capsys):
    """Another run made the folder after this one looked, and holds its lock: this run's failure to take the
    lock must not remove that run's folder, lock and log."""
    from src.training import pipeline

    class HeldByAnother:
        def __init__(self, directory):
            self.directory = directory

        def __enter__(self):
            (self.directory / ".lock").write_text("4242")
            (self.directory / "train.log").write_text("the other run's log")
            raise TrainingError(f"another run (process 4242) is training in {self.directory}")

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(pipeline, "RunLock", HeldByAnother)
    assert train_main(train_args(csv_reviews, tmp_path)) == 1
    assert "another run (process 4242)" in capsys.readouterr().err
    assert {path.name for path in (tmp_path / "run").iterdir()} == {".lock", "train.log"}


def test_a_failed_run_keeps_a_checkpoint_folder_that_was_there(csv_reviews, tmp_path, capsys):
    """Only a folder the failed run made is removed; one that was there keeps what it held and the log."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    args = train_args(csv_reviews, tmp_path)
    args[args.index("--output-dir") + 1] = str(tmp_path / "file" / "model")
    (tmp_path / "file").write_text("a file, not a folder")
    assert train_main(args) == 1
    assert {path.name for path in (tmp_path / "run").iterdir()} == {"notes.txt", "train.log", ".lock"}


def test_a_stop_while_finishing_prints_the_resume_line_and_resume_finishes(csv_reviews, tmp_path, monkeypatch,
                                                                           capsys):
    fit = NgramModel.fit

    def fit_then_sigterm(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return fit(*args, **kwargs)

    monkeypatch.setattr(NgramModel, "fit", fit_then_sigterm)
    assert train_main(train_args(csv_reviews, tmp_path, "--ngram-blend")) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip()
    assert "stopped by SIGTERM after training" in err and "--resume auto" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists() and list((tmp_path / "run").glob("checkpoint_epoch_001.pt"))
    assert "received SIGTERM: stopped by SIGTERM after training" in (tmp_path / "run" / "train.log").read_text()
    monkeypatch.setattr(NgramModel, "fit", fit)
    assert train_main(train_args(csv_reviews, tmp_path, "--ngram-blend", "--resume", "auto")) == 0
    assert (tmp_path / "model" / "ngram_model.pt").is_file()


@pytest.fixture(scope="module")
def model_dir(csv_reviews, tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    assert train_main(train_args(csv_reviews, root)) == 0
    return root / "model"


def test_evaluate_with_a_full_device_as_standard_output_gives_one_line(model_dir, csv_reviews, tmp_path, capsys,
                                                                        monkeypatch):
    """`evaluate > /dev/full` ended in a traceback; the files are written before the summary."""
    with open("/dev/full", "w") as full:
        monkeypatch.setattr("sys.stdout", full)
        assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(csv_reviews), "--output-dir",
                              str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not write the summary to standard output (No space left" in err
    assert (tmp_path / "out" / "evaluation.json").is_file()


def test_predict_output_through_a_link_to_a_full_device_gives_one_line(model_dir, tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to("/dev/full")
    assert predict_main(["--model-dir", str(model_dir), "--output", str(link), "Good film."]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert link.is_symlink() and os.readlink(link) == "/dev/full"  # the link was written through, not replaced


def test_predict_output_to_a_fifo_is_written_in_place(model_dir, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert predict_main(["--model-dir", str(model_dir), "--output", str(fifo), "Good film.", "Bad film."]) == 0
    reader.join(timeout=30)
    assert len(received[0].splitlines()) == 2 and fifo.is_fifo()


def test_evaluate_into_an_unwritable_folder_gives_one_line_before_evaluating(model_dir, csv_reviews, tmp_path,
                                                                             capsys):
    (tmp_path / "file").write_text("a file")
    code = evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(csv_reviews),
                          "--output-dir", str(tmp_path / "file" / "evaluation")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot write evaluation.json and plots" in err


def test_evaluate_that_runs_out_of_room_midway_keeps_the_whole_earlier_evaluation(model_dir, csv_reviews, tmp_path,
                                                                                 monkeypatch, capsys):
    """evaluation.json and the plots are one set: a disk that filled at the last plot left new and old files
    mixed, under a message that said the old ones were unchanged."""
    out = tmp_path / "evaluation"
    args = ["--model-dir", str(model_dir), "--data-dir", str(csv_reviews), "--output-dir", str(out), "--max-samples",
            "50"]
    assert evaluate_main(args) == 0
    capsys.readouterr()
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert {"evaluation.json", "confusion_matrix.png", "reliability_diagram.png"} <= set(before)

    def full_disk(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate_module, "plot_reliability_diagram", full_disk)  # the last file of the set
    assert evaluate_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "are unchanged" in err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no staging folder left either


@pytest.mark.parametrize("made, kept", [
    ((".lock", "train.log"), []),  # only the failed run's own leftovers: every folder it made goes
    ((".lock", "checkpoint_epoch_001.pt"), ["a", "a/b", "a/b/run"]),  # anything more keeps all of them
])
def test_folders_a_failure_made_are_removed_only_when_bare(tmp_path, made, kept):
    run = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError):
        with folders_removed_on_failure(run, (".lock", "train.log")):
            run.mkdir(parents=True)
            for name in made:
                (run / name).write_text("x")
            raise RuntimeError("failed")
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_dir()) == kept


def test_folders_are_kept_after_success(tmp_path):
    with folders_removed_on_failure(tmp_path / "run", (".lock",)):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / ".lock").write_text("x")
    assert (tmp_path / "run" / ".lock").is_file()


def test_a_failed_evaluation_leaves_no_folder_it_made(tmp_path, capsys):
    """A mistyped --model-dir (the default place for the evaluation's files) is not left behind."""
    (tmp_path / "data.csv").write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    assert evaluate_main(["--model-dir", str(tmp_path / "typo" / "model"), "--file", str(tmp_path / "data.csv")]) == 1
    assert "not a model directory" in capsys.readouterr().err and not (tmp_path / "typo").exists()

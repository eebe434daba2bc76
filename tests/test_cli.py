"""train_model.py: end to end on real reviews, config files, resume, and bad values."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from src.models.model_dir import load_model_directory
from src.training import pipeline
from src.training.train_model import main, resolve_config
from src.utils.checkpoint_io import load_state, save_state
from tests.helpers import REPO_ROOT

SMALL = ["--embedding-dim", "32", "--hidden-dim", "16", "--max-length", "120", "--batch-size", "32",
         "--max-train-samples", "600", "--max-test-samples", "300", "--pretrain-lm-epochs", "0", "--quiet"]


@pytest.mark.slow
def test_script_trains_on_real_reviews_and_writes_a_model_directory(tmp_path, imdb_tree):
    out, run = tmp_path / "model", tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "src/training/train_model.py", "--data-dir", str(imdb_tree), "--epochs", "1",
         "--output-dir", str(out), "--checkpoint-dir", str(run), "--weight-drop", "0.2", *SMALL],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL_CARD.md", "calibration.json", "config.json", "metrics.json", "model.int8.onnx", "model.onnx",
        "model.pt", "vocab.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n_examples"] == 300 and 0 <= metrics["test"]["accuracy"] <= 1
    saved = json.loads((out / "config.json").read_text())
    assert (saved["hidden_dim"], saved["weight_drop"]) == (16, 0.2)
    assert {"config.json", "train.log", "metrics.jsonl", "checkpoint_epoch_001.pt"} <= {p.name for p in run.iterdir()}
    model, preprocessor = load_model_directory(out)
    ids = torch.tensor([preprocessor.encode("a wonderful, moving film")])
    assert model(ids).shape == (1,) and not model.training and model.config.weight_drop == 0.2


def test_resume_auto_continues_the_run(tmp_path, imdb_tree):
    args = ["--data-dir", str(imdb_tree), "--output-dir", str(tmp_path / "model"),
            "--checkpoint-dir", str(tmp_path / "run"), *SMALL]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume", "auto"]) == 0
    history = json.loads((tmp_path / "model" / "metrics.json").read_text())["history"]
    assert history["epochs_completed"] == 2 and len(history["train_losses"]) == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resuming from" in log and "checkpoint_epoch_001.pt after epoch 1" in log


def test_config_file_with_command_line_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 3\nhidden-dim: 64\nscheduler: cosine\nlearning_rate: 0.002\n")
    cfg = resolve_config(["--config", str(config), "--epochs", "7"])
    assert (cfg.epochs, cfg.hidden_dim, cfg.scheduler, cfg.learning_rate) == (7, 64, "cosine", 0.002)
    (tmp_path / "run.json").write_text(json.dumps({"batch_size": 16}))
    assert resolve_config(["--config", str(tmp_path / "run.json")]).batch_size == 16


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "--epochs must be at least 1"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--scheduler", "linear"], "--scheduler must be one of plateau, step, cosine, slanted_triangular, none, got 'linear'"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--learning-rate", "0"], "--learning-rate must be positive"),
    (["--validation-split", "1"], "--validation-split must be between 0 and 1"),
    (["--epochs", "many"], "--epochs must be a whole number, got 'many'"),
    (["--bidirectional", "perhaps"], "--bidirectional must be true or false, got 'perhaps'"),
    (["--pretrain-lm-epochs", "-1"], "--pretrain-lm-epochs must not be negative"),
    (["--seed", "-1"], "--seed must not be negative"),  # NumPy's words, with exit code 1, before these bounds
    (["--seed", str(2 ** 32)], "--seed must be at most 4294967295, got 4294967296"),
    (["--n-layers", "1000000"], "--n-layers must be at most 32"),  # took minutes and gigabytes to build
])
def test_impossible_values_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_setting_in_config_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 2\nhiden_dim: 3\n")
    with pytest.raises(SystemExit):
        resolve_config(["--config", str(config)])
    assert "unknown settings: hiden_dim" in capsys.readouterr().err


def test_data_errors_are_one_line(tmp_path, capsys):
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("review,stars\nnice,5\n")
    code = main(["--data-dir", str(tmp_path), "--checkpoint-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "train.csv has no 'text' column" in err
    assert "Traceback" not in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_help_lists_every_documented_flag():
    text = subprocess.run([sys.executable, "src/training/train_model.py", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120).stdout
    for flag in ["--data-dir", "--epochs", "--use-glove", "--glove-corpus", "--glove-dim", "--early-stopping-patience",
                 "--batch-size", "--learning-rate", "--hidden-dim", "--n-layers", "--dropout", "--scheduler",
                 "--gradient-clip", "--output-dir", "--checkpoint-dir", "--embedding-dim", "--max-vocab-size",
                 "--max-length", "--validation-split", "--weight-decay", "--seed", "--device", "--num-workers",
                 "--resume", "--freeze-embeddings", "--accumulation-steps", "--amp", "--save-every", "--config",
                 "--ngram-blend"]:
        assert flag in text, flag


def test_resume_auto_prefers_the_registry_and_skips_damaged_files(tmp_path):
    from src.training.pipeline import find_resume_checkpoint
    from tests.helpers import tiny_model
    from src.training import CheckpointManager

    manager = CheckpointManager(tmp_path)
    for epoch in (1, 2):
        manager.save_checkpoint(tiny_model(), None, epoch, 1.0, 1.0, 0.5)
    (tmp_path / "checkpoint_epoch_009.pt").write_bytes(b"left over from another run")
    assert find_resume_checkpoint(tmp_path).name == "checkpoint_epoch_002.pt"
    data = (tmp_path / "checkpoint_epoch_002.pt").read_bytes()
    (tmp_path / "checkpoint_epoch_002.pt").write_bytes(data[: len(data) // 3])
    assert find_resume_checkpoint(tmp_path).name == "checkpoint_epoch_001.pt"


def test_use_glove_from_a_cached_zip(tmp_path, imdb_tree, real_data):
    cache = tmp_path / "glove"
    cache.mkdir()
    (cache / "glove.6B.zip").symlink_to(real_data / "glove" / "glove.6B.zip")
    args = ["--data-dir", str(imdb_tree), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), "--use-glove", "--glove-dim", "50d", "--glove-cache-dir", str(cache),
            "--freeze-embeddings", "--epochs", "1", *SMALL[2:]]  # no --embedding-dim: GloVe sets it
    assert main(args) == 0
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["glove"]["coverage"] > 0.8 and metrics["glove"]["embedding_dim"] == 50
    embedding = load_model_directory(tmp_path / "model")[0].embedding.weight.detach().clone()
    assert main(args + ["--epochs", "2", "--resume", "auto"]) == 0  # the frozen embedding stays frozen
    resumed = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert resumed["history"]["epochs_completed"] == 2
    assert torch.equal(load_model_directory(tmp_path / "model")[0].embedding.weight, embedding)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["embedding_dim"] == 50
    assert "GloVe 6B 50d" in (tmp_path / "run" / "train.log").read_text()


def test_a_glove_file_the_archive_lacks_fails_before_the_data_are_read(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "glove"
    cache.mkdir()
    with zipfile.ZipFile(cache / "glove.6B.zip", "w") as bundle:
        bundle.writestr("glove.6B.50d.txt", "the " + " ".join(["0.1"] * 50) + "\n")
    monkeypatch.setattr(pipeline, "_load_data", lambda *args: pytest.fail("the data were read first"))
    code = main(["--data-dir", str(tmp_path / "imdb"), "--checkpoint-dir", str(tmp_path / "run"), "--use-glove",
                 "--glove-dim", "100d", "--glove-cache-dir", str(cache), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "has no member glove.6B.100d.txt (it holds glove.6B.50d.txt)" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_glove_with_learned_dimensions_trains_pretrains_and_says_so(tmp_path, imdb_tree, real_data):
    cache = tmp_path / "glove"
    cache.mkdir()
    (cache / "glove.6B.zip").symlink_to(real_data / "glove" / "glove.6B.zip")
    args = ["--data-dir", str(imdb_tree), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), "--use-glove", "--glove-dim", "50d", "--embedding-dim", "64", "--glove-cache-dir",
            str(cache), "--epochs", "1", *SMALL[2:], "--pretrain-lm-epochs", "1"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["glove"]["learned_dims"] == 14 and metrics["lm_pretraining"]
    assert load_model_directory(tmp_path / "model")[0].embedding.weight.shape[1] == 64
    assert ("GloVe 6B 50d vectors" in (card := (tmp_path / "model" / "MODEL_CARD.md").read_text())
            and "and 14 more dimensions learned from scratch" in card)


def test_embedding_dim_holds_the_glove_vectors_and_may_add_learned_dimensions(capsys):
    assert resolve_config(["--use-glove", "--glove-dim", "50d", "--embedding-dim", "128"]).embedding_dim == 128
    assert resolve_config(["--use-glove", "--glove-dim", "50d"]).embedding_dim == 50
    with pytest.raises(SystemExit):
        resolve_config(["--use-glove", "--glove-dim", "100d", "--embedding-dim", "64"])
    assert "--embedding-dim 64 is smaller than --glove-dim 100d; use --embedding-dim 100 or more" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        resolve_config(["--use-glove", "--glove-dim", "50d", "--embedding-dim", "64", "--freeze-embeddings"])
    assert "--freeze-embeddings would freeze the 14 dimensions beyond the GloVe vectors" in capsys.readouterr().err


def test_packed_sequence_path_trains_the_same_model_as_the_padded_one(tmp_path, imdb_tree):
    """Same data, same seed, no dropout: the two LSTM paths give the same losses (up to rounding)."""
    losses = {}
    for path in ("padded", "packed"):
        args = ["--data-dir", str(imdb_tree), "--output-dir", str(tmp_path / path / "model"), "--dropout", "0",
                "--checkpoint-dir", str(tmp_path / path / "run"), *SMALL, "--epochs", "1", "--sequence-path", path]
        assert main(args) == 0
        assert json.loads((tmp_path / path / "run" / "config.json").read_text())["sequence_path"] == path
        history = json.loads((tmp_path / path / "model" / "metrics.json").read_text())["history"]
        losses[path] = history["train_losses"] + history["val_losses"]
    assert losses["padded"] == pytest.approx(losses["packed"], rel=1e-4)


@pytest.mark.parametrize("name, expected", [
    ("recommended", {"use_glove": True, "glove_dim": "50d", "embedding_dim": 50, "truncation": "head_tail",
                     "embedding_dropout": 0.4, "dropout": 0.5, "hidden_dim": 128, "n_layers": 1,
                     "pretrain_lm_epochs": 1, "adversarial_eps": 1.0, "ngram_blend": True, "max_minutes": 56.0}),
    ("fast", {"use_glove": True, "embedding_dim": 50, "hidden_dim": 64, "n_layers": 1, "pretrain_lm_epochs": 0,
              "adversarial_eps": 1.0, "ngram_blend": False}),
    ("large-gpu", {"use_glove": False, "embedding_dim": 256, "hidden_dim": 1024, "n_layers": 1,
                   "pretrain_lm_epochs": 3, "adversarial_eps": 1.0, "ngram_blend": True}),
])
def test_shipped_config_files_resolve_to_the_documented_settings(name, expected):
    cfg = resolve_config(["--config", str(REPO_ROOT / "configs" / f"{name}.yaml"), "--epochs", "3"])
    assert {key: getattr(cfg, key) for key in expected} == expected and cfg.epochs == 3


def test_none_clears_a_numeric_setting_that_a_settings_file_sets(capsys):
    recommended = str(REPO_ROOT / "configs" / "recommended.yaml")
    assert resolve_config(["--config", recommended]).max_minutes == 56.0
    assert resolve_config(["--config", recommended, "--max-minutes", "none"]).max_minutes is None
    assert resolve_config(["--early-stopping-patience", "None"]).early_stopping_patience is None
    assert resolve_config(["--class-weights", "none"]).class_weights == "none"  # a word of its own, kept
    with pytest.raises(SystemExit):
        resolve_config(["--epochs", "none"])  # --epochs cannot be unset
    assert "--epochs must be a whole number, got 'none'" in capsys.readouterr().err


def test_ngram_blend_flag_turns_the_blend_on_and_off():
    assert resolve_config([]).ngram_blend is False
    assert resolve_config(["--ngram-blend"]).ngram_blend is True
    recommended = str(REPO_ROOT / "configs" / "recommended.yaml")
    assert resolve_config(["--config", recommended, "--no-ngram-blend"]).ngram_blend is False


@pytest.mark.parametrize("file_settings, expected", [
    ({"bidirectional": "false"}, ("bidirectional", False)),
    ({"bidirectional": False, "epochs": 3}, ("epochs", 3)),
    ({"learning_rate": "0.01"}, ("learning_rate", 0.01)),
    ({"epochs": float("nan")}, "--epochs must be a whole number, got nan"),
    ({"dropout": float("nan")}, "--dropout must be a finite number"),
    ({"seed": "abc"}, "--seed must be a whole number, got 'abc'"),
    ({"epochs": "ten"}, "--epochs must be a whole number, got 'ten'"),
    ({"use_glove": "maybe"}, "--use-glove must be true or false, got 'maybe'"),
    ({"hidden_dim": 1.5}, "--hidden-dim must be a whole number, got 1.5"),
])
def test_config_file_values_are_checked_with_their_type(tmp_path, capsys, file_settings, expected):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(file_settings))
    if isinstance(expected, tuple):
        assert getattr(resolve_config(["--config", str(config)]), expected[0]) == expected[1]
        return
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(["--config", str(config)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err and err.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    ("epochs: 3\ndropout: 1.5\n", "config file {path}: --dropout must be in [0, 1), got 1.5"),
    ("epochs: 3\nlayers: [1, 2\n", "config file {path} is not valid YAML/JSON (line 3, column 1): expected ',' or ']'"),
], ids=["a value out of range", "a syntax error"])
def test_a_settings_file_error_names_the_file_and_where_in_it(tmp_path, capsys, text, message):
    (tmp_path / "run.yaml").write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(["--config", str(tmp_path / "run.yaml")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.format(path=tmp_path / "run.yaml") in err and err.count("\n") == 1


def test_a_settings_files_null_scheduler_is_none(tmp_path):
    (tmp_path / "run.yaml").write_text("scheduler: null\n")
    assert resolve_config(["--config", str(tmp_path / "run.yaml")]).scheduler == "none"


def test_a_settings_file_value_built_from_aliases_is_refused_without_writing_it_out(tmp_path, capsys):
    """Seven levels of nine aliases: 400 bytes of YAML, a value whose full repr is 15 MB (nine levels: all
    the memory)."""
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 8)]
    (tmp_path / "bomb.yaml").write_text(f"seed: [{', '.join(levels)}]\n")
    with pytest.raises(SystemExit) as exit_info:
        resolve_config(["--config", str(tmp_path / "bomb.yaml")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--seed must be a number, got [[1, 1, 1, 1, ...]" in err
    assert len(err) < 500 and err.count("\n") == 1


def test_the_python_api_checks_with_the_same_rules():
    from src.data.preprocessing import TextPreprocessor
    from src.models.lstm_model import LSTMClassifier

    with pytest.raises(ValueError, match="max_length must be at least 1, got 0"):
        TextPreprocessor(max_length=0)
    with pytest.raises(ValueError, match="truncation must be one of head, head_tail"):
        TextPreprocessor(truncation="middle")
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\)"):
        LSTMClassifier(vocab_size=10, dropout=1.0)
    assert LSTMClassifier(vocab_size=10).config.embedding_dim == resolve_config([]).embedding_dim


def test_min_delta_flag():
    assert resolve_config([]).min_delta == 0.001
    assert resolve_config(["--min-delta", "0.01"]).min_delta == 0.01


TINY_RUN = ["--embedding-dim", "8", "--hidden-dim", "8", "--max-length", "60", "--max-vocab-size", "2000",
            "--pretrain-lm-epochs", "0", "--quiet", "--no-tensorboard"]


@pytest.mark.parametrize("run_config, message", [
    ([1], "does not hold a usable run configuration (a list)"),
    ({"max_length": 10**12}, "holds settings that are not valid (--max-length must be at most"),
], ids=["a list", "a setting out of range"])
def test_a_checkpoints_run_settings_are_checked_before_a_resumed_run_takes_them(tmp_path, csv_reviews, capsys,
                                                                              run_config, message):
    """A resumed run takes over the checkpoint's settings that it was not given: they obey the rules a given
    setting does (the file may come from anyone)."""
    args = ["--data-dir", str(csv_reviews), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), *TINY_RUN]
    assert main(args + ["--epochs", "1"]) == 0
    state = load_state(tmp_path / "run" / "checkpoint_epoch_001.pt")
    state["run_config"] = run_config if isinstance(run_config, list) else {**state["run_config"], **run_config}
    crafted = save_state(tmp_path / "crafted.pt", state)
    capsys.readouterr()
    assert main(args[:6] + ["--epochs", "2", "--resume", str(crafted), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_model_larger_than_the_memory_is_refused_before_it_is_built(tmp_path, csv_reviews, capsys, monkeypatch):
    """--hidden-dim 8000 on a 24 GB machine ended in the allocator's traceback: the run now stops first."""
    from src.training import run_control

    monkeypatch.setattr(run_control, "available_memory", lambda: 2_000_000)  # 2 MB; the model takes about 3
    monkeypatch.setattr(pipeline, "_prepare_model", lambda *args: pytest.fail("the model was built"))
    args = ["--data-dir", str(csv_reviews), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), *TINY_RUN, "--hidden-dim", "64", "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "the model needs about 3 MB of memory, more than the 2 MB this machine has available; use a smaller " \
           "--hidden-dim" in err and err.count("\n") == 1


def test_resume_refuses_changed_settings_and_data_but_not_epochs(tmp_path, csv_reviews, capsys):
    data = tmp_path / "data"
    shutil.copytree(csv_reviews, data)
    args = ["--data-dir", str(data), "--output-dir", str(tmp_path / "model"), "--checkpoint-dir",
            str(tmp_path / "run"), *TINY_RUN]
    assert main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    code = main(args + ["--epochs", "2", "--resume", "auto", "--seed", "7", "--max-length", "50"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--seed (checkpoint 42, now 7)" in err and "--max-length (checkpoint 60, now 50)" in err
    lines = (data / "train.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "train.csv").write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")  # one review fewer
    assert main(args + ["--epochs", "2", "--resume", "auto"]) == 2
    assert "the training data changed" in capsys.readouterr().err
    shutil.copy(csv_reviews / "train.csv", data / "train.csv")
    allowed = ["--epochs", "2", "--early-stopping-patience", "3", "--min-delta", "0.01", "--resume", "auto"]
    assert main(args + allowed) == 0
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["history"]["epochs_completed"] == 2
    bare = args[:6] + ["--epochs", "3", "--resume", "auto", "--quiet", "--no-tensorboard"]  # no model flags
    assert main(bare) == 0
    assert json.loads((tmp_path / "model" / "vocab.json").read_text())["max_length"] == 60  # the checkpoint's
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hidden_dim"] == 8

"""Language-model pretraining: it learns what is predictable, cannot see its targets, and touches only the layers
that read one direction."""

import copy
import io
import itertools
import json
import tarfile

import numpy as np
import pytest
import torch

from src.data import load_unlabeled_reviews
from src.models.lstm_model import LSTMClassifier
from src.training.lm_pretraining import PretrainConfig, pretrain_language_model, token_stream
from src.config import TrainConfig
from src.exceptions import ResumeRefused
from src.utils.checkpoint_io import load_state, save_state
from src.training.pipeline import run_training
from tests.helpers import synthetic_reviews, write_imdb_tree

VOCAB = 14  # <pad>, <unk>, 12 words


def tiny_model(**overrides) -> LSTMClassifier:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, embedding_dim=8, hidden_dim=16, n_layers=2, dropout=0.0)
    settings.update(overrides)
    return LSTMClassifier(**settings)


def cyclic_reviews(count: int = 60, length: int = 30) -> list:
    """Words 2..13 in a fixed cycle: each word fixes the next one and the previous one."""
    rng = np.random.default_rng(0)
    return [(2 + (rng.integers(12) + np.arange(length)) % 12).astype(np.int32) for _ in range(count)]


def random_reviews(count: int = 60, length: int = 30) -> list:
    """Independent uniform words: nothing about a neighbour is predictable."""
    rng = np.random.default_rng(0)
    return [rng.integers(2, VOCAB, size=length).astype(np.int32) for _ in range(count)]


SETTINGS = dict(epochs=30, window=10, batch_size=16, negatives=8, learning_rate=1e-2, dropout=0.0)


@pytest.mark.parametrize("stacking", ["joint", "per_direction"])
def test_predictable_text_is_learned_in_both_directions(stacking):
    stats = pretrain_language_model(tiny_model(stacking=stacking), cyclic_reviews(), PretrainConfig(**SETTINGS))
    assert stats["steps"] > 100 and stats["last_loss"] < 0.2 * stats["first_loss"]


def test_a_short_run_reports_the_loss_of_its_first_and_last_half():
    """Under 200 steps, the first and last 100 overlap: the report compares the halves, not one mean twice."""
    stats = pretrain_language_model(tiny_model(), cyclic_reviews(), PretrainConfig(**{**SETTINGS, "epochs": 0.5}))
    assert 2 <= stats["steps"] < 200 and stats["last_loss"] < stats["first_loss"]


@pytest.mark.parametrize("stacking", ["joint", "per_direction"])
def test_no_direction_sees_the_word_it_predicts(stacking):
    """On random words a leak (the target among the inputs, in any layer) would be learned at once."""
    stats = pretrain_language_model(tiny_model(stacking=stacking, n_layers=3), random_reviews(),
                                    PretrainConfig(**SETTINGS))
    assert stats["last_loss"] > 0.8 * stats["first_loss"]


def test_per_direction_stacks_pretrain_every_layer_of_both_directions():
    model = tiny_model(stacking="per_direction", n_layers=3)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    pretrain_language_model(model, cyclic_reviews(), PretrainConfig(**{**SETTINGS, "epochs": 1}))
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert {name.rsplit(".", 1)[0] for name in changed if name.startswith("layers.")} == {
        f"layers.{layer}.{direction}" for layer in range(3) for direction in range(2)}
    assert not any(name.startswith("fc.") for name in changed)


def test_only_the_embedding_and_first_layer_change():
    model = tiny_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    pretrain_language_model(model, cyclic_reviews(), PretrainConfig(**{**SETTINGS, "epochs": 1}))
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed and all(name.startswith(("embedding.", "layers.0.")) for name in changed)
    assert any(name.startswith("layers.0.1.") for name in changed)  # the backward direction too
    assert model.training  # left in the mode it was in


def test_same_seed_gives_bit_identical_weights_on_several_threads():
    """A resumed run equals an uninterrupted one only if pretraining repeats exactly."""
    rng = np.random.default_rng(0)
    corpus = [rng.integers(2, 3000, size=200).astype(np.int32) for _ in range(300)]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        weights = []
        for _ in range(2):
            model = tiny_model(vocab_size=3000, embedding_dim=16)
            pretrain_language_model(model, corpus, PretrainConfig(epochs=1, seed=3))
            weights.append(model.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(value, weights[1][name]) for name, value in weights[0].items())


def test_frozen_embeddings_stay_frozen():
    model = tiny_model()
    model.embedding.weight.requires_grad_(False)
    before = model.embedding.weight.clone()
    pretrain_language_model(model, cyclic_reviews(), PretrainConfig(**{**SETTINGS, "epochs": 1}))
    assert torch.equal(model.embedding.weight, before)


def test_token_stream_separates_reviews():
    stream = token_stream([np.array([5, 6]), np.array([7])], np.random.default_rng(0), separator=0)
    assert sorted(stream.tolist()) == [0, 0, 5, 6, 7] and stream.dtype == np.int64
    assert stream.tolist() in ([5, 6, 0, 7, 0], [7, 0, 5, 6, 0])


@pytest.mark.parametrize("settings, message", [
    (dict(epochs=0), "epochs must be positive"),
    (dict(window=0), "window must be at least 1"),
    (dict(negatives=0), "negatives must be at least 1"),
])
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        PretrainConfig(**settings)


def test_unidirectional_model_pretrains_its_forward_language_model():
    model = tiny_model(bidirectional=False)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    stats = pretrain_language_model(model, cyclic_reviews(), PretrainConfig(**SETTINGS))
    assert stats["last_loss"] < 0.2 * stats["first_loss"]
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    # both layers read the one direction, so both are part of the language model
    assert {name.rsplit(".", 1)[0] for name in changed if name.startswith("layers.")} == {"layers.0.0", "layers.1.0"}
    assert all(name.startswith(("embedding.", "layers.")) for name in changed)


def test_tiny_corpus_is_refused():
    with pytest.raises(ValueError, match="fewer than 101 words"):
        pretrain_language_model(tiny_model(), [np.array([2, 3, 4])], PretrainConfig())


def unlabeled_texts(count: int) -> list:
    return [f"review {i} <br />with the film and the plot" for i in range(count)]


def test_unlabeled_reviews_from_a_tree_an_archive_and_csv(tmp_path):
    tree = write_imdb_tree(tmp_path / "tree", {"train": {**synthetic_reviews(3), "unsup": unlabeled_texts(12)},
                                               "test": synthetic_reviews(3)})
    texts = load_unlabeled_reviews(tree)
    assert texts == [text.replace("<br />", " ") for text in unlabeled_texts(12)]  # in id order, markup removed
    archive = tmp_path / "packed" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for folder in sorted((tree / "aclImdb").rglob("*.txt")):
            tar.add(folder, arcname=str(folder.relative_to(tree)))
    assert load_unlabeled_reviews(archive.parent) == texts
    (tmp_path / "csv").mkdir()
    for split in ("train", "test"):
        (tmp_path / "csv" / f"{split}.csv").write_text("text,label\ngood,1\nbad,0\n")
    assert load_unlabeled_reviews(tmp_path / "csv") == []


def test_training_run_pretrains_on_unlabeled_and_training_reviews(tmp_path):
    tree = write_imdb_tree(tmp_path / "data", {"train": {**synthetic_reviews(40), "unsup": unlabeled_texts(200)},
                                               "test": synthetic_reviews(10, seed=1)})
    settings = dict(data_dir=str(tree), epochs=1, batch_size=16, embedding_dim=8, hidden_dim=8, n_layers=2,
                    max_vocab_size=100, quiet=True, tensorboard=False)
    runs = {}
    for passes in (0.0, 2.0):
        out = tmp_path / f"passes{passes}"
        runs[passes] = run_training(TrainConfig(output_dir=str(out / "model"), checkpoint_dir=str(out / "run"),
                                                pretrain_lm_epochs=passes, **settings))
    stats = runs[2.0]["lm_pretraining"]
    unlabeled_words = 200 * 9  # "review N with the film and the plot"
    assert stats["words"] > unlabeled_words and stats["steps"] >= 1 and stats["config"]["epochs"] == 2.0
    assert "lm_pretraining" not in runs[0.0]
    assert (stats["unlabeled_reviews"], stats["training_reviews"]) == (200, 64)  # 80 reviews less validation
    saved = json.loads((tmp_path / "passes2.0" / "run" / "metrics.json").read_text())
    assert saved["lm_pretraining"]["words"] == stats["words"]


def test_a_run_with_per_direction_stacks_saves_a_model_that_loads_exports_and_refuses_a_joint_resume(tmp_path):
    from src.inference import SentimentPredictor
    from src.inference.onnx_model import export_onnx

    tree = write_imdb_tree(tmp_path / "data", {"train": {**synthetic_reviews(40), "unsup": unlabeled_texts(200)},
                                               "test": synthetic_reviews(10, seed=1)})
    settings = dict(data_dir=str(tree), output_dir=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "run"),
                    batch_size=16, embedding_dim=8, hidden_dim=8, n_layers=2, max_vocab_size=100,
                    pretrain_lm_epochs=1.0, quiet=True, tensorboard=False)
    run_training(TrainConfig(epochs=1, stacking="per_direction", **settings))
    assert json.loads((tmp_path / "model" / "config.json").read_text())["stacking"] == "per_direction"
    export_onnx(tmp_path / "model")
    texts = ["review 3 with the film and the plot", "a great film", "bad"]
    runtimes = [SentimentPredictor.from_pretrained(tmp_path / "model", runtime=r, precision=p)
                for r, p in (("torch", "float32"), ("onnxruntime", "float32"), ("onnxruntime", "int8"))]

    assert runtimes[0].model.config.stacking == "per_direction" and runtimes[1].runtime == "onnxruntime"
    assert np.abs(runtimes[0].lstm_log_odds(texts) - runtimes[1].lstm_log_odds(texts)).max() < 1e-4
    assert np.abs(runtimes[0].lstm_log_odds(texts) - runtimes[2].lstm_log_odds(texts)).max() < 0.02
    with pytest.raises(ResumeRefused, match="stacking"):  # another model than the checkpoint's
        run_training(TrainConfig(epochs=2, resume="auto", stacking="joint", **settings))


def test_a_checkpoint_from_before_the_newer_settings_resumes_as_the_default_model(tmp_path):
    tree = write_imdb_tree(tmp_path / "data", {"train": synthetic_reviews(40), "test": synthetic_reviews(10, seed=1)})
    settings = dict(data_dir=str(tree), output_dir=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "run"),
                    batch_size=16, embedding_dim=8, hidden_dim=8, n_layers=2, max_vocab_size=100,
                    pretrain_lm_epochs=0, quiet=True, tensorboard=False)
    run_training(TrainConfig(epochs=1, **settings))
    newer = ("stacking", "layer_lr_decay", "gradual_unfreezing", "label_smoothing", "plateau_patience",
             "restore_best_on_plateau")
    for checkpoint in (tmp_path / "run").glob("*.pt"):
        state = load_state(checkpoint)
        for name in newer:
            state["run_config"].pop(name)
            (state["model_config"] or {}).pop(name, None)
        save_state(checkpoint, state)
    with pytest.raises(ResumeRefused, match="layer-lr-decay"):  # the old run had none
        run_training(TrainConfig(epochs=2, resume="auto", layer_lr_decay=2.6, **settings))
    metrics = run_training(TrainConfig(epochs=2, resume="auto", **settings))
    assert metrics["history"]["epochs_completed"] == 2


def test_quick_run_pretrains_on_as_many_unlabeled_reviews_as_training_reviews(tmp_path):
    tree = write_imdb_tree(tmp_path / "data", {"train": {**synthetic_reviews(40), "unsup": unlabeled_texts(200)},
                                               "test": synthetic_reviews(10, seed=1)})
    metrics = run_training(TrainConfig(
        data_dir=str(tree), output_dir=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "run"), epochs=1,
        batch_size=16, embedding_dim=8, hidden_dim=8, max_vocab_size=100, max_train_samples=30,
        pretrain_lm_epochs=1.0, quiet=True, tensorboard=False))
    stats = metrics["lm_pretraining"]
    assert stats["unlabeled_reviews"] == 30 and stats["training_reviews"] == 24


def test_too_little_text_skips_pretraining_with_a_warning(tmp_path, caplog):
    reviews = {"pos": ["good film"] * 5, "neg": ["bad film"] * 5}
    tree = write_imdb_tree(tmp_path / "data", {"train": reviews, "test": reviews})
    metrics = run_training(TrainConfig(
        data_dir=str(tree), output_dir=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "run"), epochs=1,
        batch_size=4, embedding_dim=8, hidden_dim=8, quiet=True, tensorboard=False))  # pretraining is on by default
    assert "lm_pretraining" not in metrics and metrics["test"]["n_examples"] == 10
    assert "skipping language-model pretraining" in caplog.text


def test_interrupted_pretraining_continues_to_the_same_weights():
    """Stopped mid-pass (and in the second pass) and continued from the saved state: the weights, the
    losses and the step count equal those of a run that was never stopped."""
    config = PretrainConfig(**{**SETTINGS, "epochs": 1.2, "batch_size": 4, "dropout": 0.2, "checkpoint_every": 5})
    straight = tiny_model()
    expected = pretrain_language_model(straight, cyclic_reviews(), config)
    for stop_after in (7, 50):  # 47 steps per pass: inside the first pass and inside the second
        model, saves, calls = tiny_model(), [], iter(range(1, 1000))
        stats = pretrain_language_model(model, cyclic_reviews(), config, save=saves.append,
                                        should_stop=lambda: next(calls) == stop_after)
        assert stats["stopped"] and stats["steps"] == stop_after and saves[-1]["step"] == stop_after
        assert [save["step"] for save in saves] == [*range(5, stop_after, 5), stop_after]
        weights = {name: value.clone() for name, value in model.state_dict().items()}
        torch.manual_seed(123)  # the saved random state, not this one, must decide what follows
        resumed = tiny_model()
        resumed.load_state_dict(weights)
        finished = pretrain_language_model(resumed, cyclic_reviews(), config, state=saves[-1])
        assert finished["steps"] == expected["steps"] and not finished["stopped"]
        assert finished["last_loss"] == expected["last_loss"]
        for name, value in straight.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[name]), (stop_after, name)


def test_saved_pretraining_of_another_corpus_is_refused():
    config = PretrainConfig(**{**SETTINGS, "epochs": 1, "batch_size": 4})
    saves = []
    pretrain_language_model(tiny_model(), cyclic_reviews(), config, save=saves.append)
    with pytest.raises(ValueError, match="the corpus or the settings differ"):
        pretrain_language_model(tiny_model(), cyclic_reviews(count=200), config, state=saves[-1])
    edited = cyclic_reviews()
    edited[3] = edited[3][::-1].copy()  # the same number of words, in another order
    with pytest.raises(ValueError, match="read other texts than this run would"):
        pretrain_language_model(tiny_model(), edited, config, state=saves[-1])
    legacy = {key: value for key, value in saves[-1].items() if key != "corpus"}  # saved before the digest
    assert pretrain_language_model(tiny_model(), cyclic_reviews(), config, state=legacy)["steps"] == saves[-1]["step"]


@pytest.mark.parametrize("craft, message", [
    (lambda state: state["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)), "'exp_avg' of a parameter of shape"),
    (lambda state: state["optimizer"]["state"][0].update(exp_avg=torch.tensor(0.0)),
     r"'exp_avg' of a parameter of shape \(14, 8\) is a torch.float32 tensor of shape \(\)"),
    (lambda state: state.update(step=-1), r"step \(-1\) or position \(\d+\) is not a count"),
], ids=["short buffer", "scalar buffer", "negative step"])
def test_a_crafted_pretraining_state_is_refused_before_it_loads(craft, message):
    """The optimizer of pretraining is the same fused Adam: a buffer unlike its parameter crashed the process."""
    config = PretrainConfig(**{**SETTINGS, "epochs": 1, "batch_size": 4, "checkpoint_every": 2})
    saves = []
    pretrain_language_model(tiny_model(), cyclic_reviews(), config, save=saves.append)
    state = copy.deepcopy(saves[0])
    craft(state)
    with pytest.raises(ValueError, match=message):
        pretrain_language_model(tiny_model(), cyclic_reviews(), config, state=state)


def pretraining_runs(tmp_path):
    """A small IMDB tree and ``run(name, **settings)``: a whole run on it, mostly language-model pretraining
    (40 passes), in ``tmp_path / name``."""
    tree = write_imdb_tree(tmp_path / "data", {"train": {**synthetic_reviews(40), "unsup": unlabeled_texts(200)},
                                               "test": synthetic_reviews(10, seed=1)})
    settings = dict(data_dir=str(tree), epochs=1, batch_size=16, embedding_dim=8, hidden_dim=8,
                    max_vocab_size=100, pretrain_lm_epochs=40.0, quiet=True, tensorboard=False)

    def run(name, **extra):
        return run_training(TrainConfig(output_dir=str(tmp_path / name / "model"),
                                        checkpoint_dir=str(tmp_path / name / "run"), **settings, **extra))

    return tree, run


def test_a_signal_during_pretraining_saves_it_and_resume_auto_continues_it(tmp_path, monkeypatch):
    """The command line's path: SIGTERM in pretraining -> TrainingInterrupted naming the checkpoint;
    --resume auto continues pretraining and then trains, ending as a run that was never stopped."""
    import signal

    from src.exceptions import TrainingInterrupted
    from src.training import lm_pretraining

    _, run = pretraining_runs(tmp_path)
    straight = run("straight")
    step_loss, calls = lm_pretraining._step_loss, []

    def signalled_at_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)
        return step_loss(*args)

    monkeypatch.setattr(lm_pretraining, "_step_loss", signalled_at_third_step)
    with pytest.raises(TrainingInterrupted, match="during language-model pretraining.*checkpoint_pretraining.pt"):
        run("parts")
    assert not list((tmp_path / "parts" / "run").glob("checkpoint_epoch_*.pt"))
    monkeypatch.setattr(lm_pretraining, "_step_loss", step_loss)
    resumed = run("parts", resume="auto")
    assert resumed["lm_pretraining"]["steps"] == straight["lm_pretraining"]["steps"] > 3
    assert resumed["history"]["val_losses"] == straight["history"]["val_losses"]
    assert resumed["test"] == straight["test"]


def test_the_time_limit_stops_pretraining_and_a_resume_counts_its_minutes(tmp_path, monkeypatch, capsys):
    """--max-minutes holds in pretraining too: at the limit it saves its state with the time spent and ends
    the run with TimeLimitReached (no epoch, no model); resumed with the same limit it stops again without
    a step (on the command line: one line, exit 1); a saved time that is no number of seconds is refused;
    resumed with a larger limit it finishes as a run never stopped, its clock counting the first part. A limit
    reached by the last step stops nothing: the run trains, and its pretraining reads as not stopped."""
    from src.exceptions import CheckpointError, TimeLimitReached
    from src.training import lm_pretraining
    from src.training.train_model import main as train_main

    tree, run = pretraining_runs(tmp_path)
    straight = run("straight")
    clock, step_loss = [0.0], lm_pretraining._step_loss
    monkeypatch.setattr("time.perf_counter", lambda: clock[0])

    def six_seconds_a_step(*args):
        clock[0] += 6.0
        return step_loss(*args)

    monkeypatch.setattr(lm_pretraining, "_step_loss", six_seconds_a_step)
    saved = tmp_path / "parts" / "run" / "checkpoint_pretraining.pt"
    message = (r"time limit of 0.5 minutes \(--max-minutes\) ran out during language-model pretraining, at step 6 "
               rf"of {straight['lm_pretraining']['steps']}.*checkpoint_pretraining.pt.*--resume auto")
    with pytest.raises(TimeLimitReached, match=message):  # 30 s hold five steps; the sixth ends past them
        run("parts", max_minutes=0.5)
    state = load_state(saved)
    assert state["pretraining"]["step"] == 6 and state["time_budget"]["spent"] == 36.0
    assert not list(saved.parent.glob("checkpoint_epoch_*.pt")) and not (tmp_path / "parts" / "model").exists()
    parts = tmp_path / "parts"  # resumed on the command line with the same limit: one line, exit 1, no step
    capsys.readouterr()  # drop what the runs above logged
    assert train_main(["--data-dir", str(tree), "--output-dir", str(parts / "model"), "--checkpoint-dir",
                       str(parts / "run"), "--resume", "auto", "--max-minutes", "0.5", "--quiet"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: the time limit of 0.5 minutes")
    assert load_state(saved)["pretraining"]["step"] == 6
    save_state(tmp_path / "bad.pt", {**state, "time_budget": {"spent": -1.0}})
    with pytest.raises(CheckpointError, match="bad.pt holds no usable time spent"):
        run("parts", resume=str(tmp_path / "bad.pt"))
    monkeypatch.setattr(lm_pretraining, "_step_loss", step_loss)
    resumed = run("parts", max_minutes=60.0, resume="auto")
    assert resumed["lm_pretraining"]["steps"] == straight["lm_pretraining"]["steps"]
    assert resumed["history"]["val_losses"] == straight["history"]["val_losses"] and resumed["test"] == straight["test"]
    assert load_state(saved.parent / "checkpoint_epoch_001.pt")["time_budget"]["spent"] == 36.0
    monkeypatch.setattr(lm_pretraining, "_step_loss", six_seconds_a_step)
    steps = straight["lm_pretraining"]["steps"]
    last = run("last", max_minutes=(6.0 * steps - 3.0) / 60)  # the last step ends 3 s past the limit
    assert last["lm_pretraining"]["steps"] == steps and last["lm_pretraining"]["stopped"] is False
    assert last["history"]["epochs_completed"] == 1 and last["test"]["n_examples"] == 20


def test_a_signal_during_pretrainings_final_save_still_stops_the_run(tmp_path, monkeypatch):
    """SIGTERM while the finished pretraining is being saved (after its last stop check): the run ends with
    TrainingInterrupted instead of training on with the signal lost, and its checkpoint is complete."""
    import signal

    from src.exceptions import TrainingInterrupted
    from src.training import pipeline

    _, run = pretraining_runs(tmp_path)
    save = pipeline._PretrainingCheckpoint.__call__

    def signalled_at_the_final_save(self, state):
        save(self, state)
        if state["step"] == state["total_steps"]:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(pipeline._PretrainingCheckpoint, "__call__", signalled_at_the_final_save)
    with pytest.raises(TrainingInterrupted, match=r"during language-model pretraining \(step 8\)"):
        run("run")
    assert load_state(tmp_path / "run" / "run" / "checkpoint_pretraining.pt")["pretraining"]["step"] == 8


@pytest.mark.parametrize("other_rank, step, error", [(1, 3, "TimeLimitReached"), (15, 3, "TrainingInterrupted"),
                                                     (15, 8, "TrainingInterrupted")])
def test_pretraining_stops_where_any_rank_asks_to(tmp_path, monkeypatch, other_rank, step, error):
    """Under torchrun each step's stop is agreed over the ranks (the largest of their answers), so that all
    stop after the same step: here another rank answers, after ``step``, that its clock ran out (1) or that
    it received SIGTERM (15), while this one has neither. A signal with the last step (the 8th of this run)
    still ends the run, its pretraining saved complete."""
    from src import exceptions
    from src.training import pipeline

    _, run = pretraining_runs(tmp_path)
    answers = itertools.count(1)
    monkeypatch.setattr(pipeline, "max_over_ranks",
                        lambda value, device: max(value, other_rank if next(answers) == step else 0))
    with pytest.raises(getattr(exceptions, error), match=rf"during language-model pretraining.*step {step}\b"):
        run("run", max_minutes=60.0)
    saved = load_state(tmp_path / "run" / "run" / "checkpoint_pretraining.pt")["pretraining"]
    assert saved["step"] == step and saved["total_steps"] == 8

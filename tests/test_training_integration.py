"""The Trainer end to end on synthetic data (tiny models, a few seconds each)."""

import json
import math

import pytest
import torch

from src.exceptions import CheckpointError, TrainingError
from src.training import Trainer
from src.utils.checkpoint_io import load_state
from tests.helpers import make_trainer, synthetic_loaders, tiny_model

HISTORY_KEYS = {"train_losses", "val_losses", "train_accuracies", "val_accuracies", "learning_rates",
                "best_val_loss", "best_val_accuracy", "best_epoch", "epochs_completed", "stopped_early", "total_time"}


def scripted_validation(trainer, losses, accuracies=None):
    """Make evaluate_model report ``losses`` (and ``accuracies``, else 0.5) one epoch after another."""
    values = iter(zip(losses, accuracies or [0.5] * len(losses)))
    trainer.evaluate_model = lambda loader: dict(zip(("loss", "accuracy"), next(values)), n_examples=1)


class TestTrainingIntegration:
    def test_basic_training_workflow(self, tmp_path):
        trainer = make_trainer(tmp_path)
        history = trainer.train(epochs=3)
        assert HISTORY_KEYS <= set(history)
        assert history["epochs_completed"] == 3 and len(history["train_losses"]) == 3
        assert len(history["learning_rates"]) == 3 and history["total_time"] > 0
        assert history["best_val_loss"] == history["val_losses"][history["best_epoch"] - 1]
        assert sorted(p.name for p in tmp_path.glob("checkpoint_epoch_*.pt")) == [
            "checkpoint_epoch_001.pt", "checkpoint_epoch_002.pt", "checkpoint_epoch_003.pt"]
        lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert [l["epoch"] for l in lines] == [1, 2, 3]
        assert lines[-1]["val_loss"] == history["val_losses"][-1]

    def test_convergence_on_separable_data(self, tmp_path):
        trainer = make_trainer(tmp_path, learning_rate=0.02, scheduler_type=None)
        history = trainer.train(epochs=8)
        assert max(history["val_accuracies"]) > 0.95
        assert history["train_losses"][-1] < history["train_losses"][0]

    def test_multiclass_output_uses_cross_entropy(self, tmp_path):
        trainer = make_trainer(tmp_path, learning_rate=0.02, model={"output_dim": 2})
        assert isinstance(trainer.criterion, torch.nn.CrossEntropyLoss)
        assert max(trainer.train(epochs=6)["val_accuracies"]) > 0.9

    def test_checkpoint_save_load_round_trip(self, tmp_path):
        trainer = make_trainer(tmp_path / "a")
        trainer.train(epochs=2)
        path = trainer.save_checkpoint("manual.pt", is_best=True, metrics={"note": 1.0})
        assert (tmp_path / "a" / "best_model.pt").is_file()
        other = make_trainer(tmp_path / "b", seed=5)
        info = other.load_checkpoint(path)
        assert info["epoch"] == 2 and info["metrics"] == {"note": 1.0}
        for (name, a), b in zip(trainer.model.state_dict().items(), other.model.state_dict().values()):
            assert torch.equal(a, b), name
        saved, loaded = trainer.optimizer.state_dict(), other.optimizer.state_dict()
        for key in saved["state"]:
            for field in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(saved["state"][key][field], loaded["state"][key][field])
        assert other.scheduler.state_dict() == trainer.scheduler.state_dict()
        assert other.history == trainer.history and other.epoch == 2

    def test_load_without_optimizer_keeps_the_training_state(self, tmp_path):
        trainer = make_trainer(tmp_path / "a")
        trainer.train(epochs=1)
        other = make_trainer(tmp_path / "b", seed=5)
        other.load_checkpoint(trainer.save_checkpoint("m.pt"), load_optimizer=False)
        assert other.epoch == 0 and other.optimizer.state_dict()["state"] == {}

    def test_early_stopping_stops_and_restores_best_weights(self, tmp_path):
        trainer = make_trainer(tmp_path, scheduler_type=None)
        scripted_validation(trainer, [0.5, 0.4, 0.6, 0.7, 0.8, 0.9])
        history = trainer.train(epochs=6, early_stopping_patience=2)
        assert history["stopped_early"] and history["epochs_completed"] == 4 and history["best_epoch"] == 2
        best_weights = load_state(tmp_path / "checkpoint_epoch_002.pt")["model_state"]
        for name, value in trainer.model.state_dict().items():
            assert torch.equal(value, best_weights[name]), name
        assert load_state(tmp_path / "best_model.pt")["epoch"] == 2

    @pytest.mark.parametrize("scheduler_type, expected", [
        ("step", [0.01, 0.01, 0.01, 0.01, 0.01, 0.005]),
        (None, [0.01] * 6),
        ("cosine", [0.01 * (1 + math.cos(math.pi * e / 6)) / 2 for e in range(6)]),
    ])
    def test_scheduler_learning_rate_history(self, tmp_path, scheduler_type, expected):
        trainer = make_trainer(tmp_path, scheduler_type=scheduler_type, epochs=6)
        history = trainer.train(epochs=6)
        assert history["learning_rates"] == pytest.approx(expected)

    def test_plateau_scheduler_follows_validation_loss(self, tmp_path):
        trainer = make_trainer(tmp_path, scheduler_type="plateau")
        scripted_validation(trainer, [0.5, 0.5, 0.5, 0.5, 0.4, 0.4])
        history = trainer.train(epochs=6)
        assert history["learning_rates"] == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.005, 0.005])

    def test_the_best_values_are_the_best_epochs_by_the_shared_rule(self, tmp_path):
        """Epoch 2's loss is lower by less than min_delta and epoch 3's accuracy is the highest: neither is the
        best epoch, so the history's and the summary's best values are epoch 1's, the weights best_model.pt
        holds; total_time counts validation too."""
        trainer = make_trainer(tmp_path)
        scripted_validation(trainer, [0.5, 0.4995, 0.6], [0.8, 0.81, 0.9])
        history = trainer.train(epochs=3)
        assert (history["best_epoch"], history["best_val_loss"], history["best_val_accuracy"]) == (1, 0.5, 0.8)
        assert load_state(tmp_path / "best_model.pt")["epoch"] == 1
        assert trainer.get_training_summary()["performance_metrics"]["best_val_accuracy"] == 0.8
        assert history["total_time"] > sum(history["epoch_times"])

    def test_training_summary(self, tmp_path):
        trainer = make_trainer(tmp_path)
        history = trainer.train(epochs=2)
        summary = trainer.get_training_summary()
        assert summary["training_status"]["epochs_completed"] == 2
        assert summary["training_status"]["best_epoch"] == history["best_epoch"]
        assert summary["training_status"]["stopped_early"] is False
        best = history["best_epoch"] - 1
        assert summary["performance_metrics"]["best_val_accuracy"] == history["val_accuracies"][best]
        assert summary["performance_metrics"]["final_train_loss"] == history["train_losses"][-1]
        total = sum(p.numel() for p in trainer.model.parameters())
        assert summary["model_info"]["total_parameters"] == summary["model_info"]["trainable_parameters"] == total

    def test_resume_gives_the_same_result_as_an_uninterrupted_run(self, tmp_path):
        straight = make_trainer(tmp_path / "straight", seed=1)
        expected = straight.train(epochs=5, early_stopping_patience=3)
        interrupted = make_trainer(tmp_path / "parts", seed=1)
        interrupted.train(epochs=2, early_stopping_patience=3)
        # same reviews, but another model init, RNG and sampler seed: all must come from the file
        resumed = make_trainer(tmp_path / "parts", seed=99, data_seed=1)
        resumed.train_loader.batch_sampler.seed = 99
        history = resumed.resume_training(tmp_path / "parts" / "checkpoint_epoch_002.pt", additional_epochs=3)
        for key in ("train_losses", "val_losses", "val_accuracies", "learning_rates", "best_epoch"):
            assert history[key] == expected[key], key
        assert resumed.early_stopping.counter == straight.early_stopping.counter
        assert resumed.best.state_dict() == straight.best.state_dict()
        for name, value in straight.model.state_dict().items():
            assert torch.equal(value, resumed.model.state_dict()[name]), name

    def test_gradient_accumulation_steps_the_optimizer_less_often(self, tmp_path):
        trainer = make_trainer(tmp_path, accumulation_steps=4)
        trainer.train(epochs=1)
        assert trainer.global_step == math.ceil(len(trainer.train_loader) / 4)

    def test_nan_loss_stops_training_without_touching_the_best_model(self, tmp_path):
        trainer = make_trainer(tmp_path)
        trainer.train(epochs=1)
        best_before = (tmp_path / "best_model.pt").read_bytes()
        with torch.no_grad():
            trainer.model.fc.bias.fill_(float("nan"))
        with pytest.raises(TrainingError, match="loss became nan at epoch 2, step 1.*checkpoint_epoch_001.pt"):
            trainer.train(epochs=1)
        assert (tmp_path / "best_model.pt").read_bytes() == best_before

    def test_weights_that_the_last_step_made_nan_are_not_saved(self, tmp_path):
        """The last update of an epoch can leave weights that are not numbers after a finite training loss;
        validation sees it, and neither a checkpoint nor the best model is written from them."""
        trainer = make_trainer(tmp_path)
        trainer.train(epochs=1)
        best_before = (tmp_path / "best_model.pt").read_bytes()
        real_epoch = trainer.train_epoch

        def epoch_ending_in_nan():
            metrics = real_epoch()
            with torch.no_grad():
                trainer.model.fc.bias.fill_(float("nan"))
            return metrics

        trainer.train_epoch = epoch_ending_in_nan
        with pytest.raises(TrainingError, match="validation loss became nan after epoch 2.*checkpoint_epoch_001.pt"):
            trainer.train(epochs=1)
        assert (tmp_path / "best_model.pt").read_bytes() == best_before
        assert not (tmp_path / "checkpoint_epoch_002.pt").exists()

    def test_amp_on_cpu_warns_and_leaves_the_arithmetic_to_precision(self, tmp_path):
        with pytest.warns(RuntimeWarning, match="--amp is for CUDA devices"):
            trainer = make_trainer(tmp_path, use_amp=True, device="cpu", precision="float32")
        assert trainer.precision.dtype is None and trainer.train(epochs=1)["epochs_completed"] == 1

    def test_checkpoint_of_another_model_shape_is_refused(self, tmp_path):
        trainer = make_trainer(tmp_path / "a")
        path = trainer.save_checkpoint("m.pt")
        other = make_trainer(tmp_path / "b", model={"hidden_dim": 4})
        with pytest.raises(CheckpointError, match="hidden_dim: checkpoint 8 vs model 4"):
            other.load_checkpoint(path)

    def test_manual_trainer_construction(self, tmp_path):
        train_loader, val_loader = synthetic_loaders()
        model = tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = Trainer(model, train_loader, val_loader, optimizer, torch.nn.BCEWithLogitsLoss(),
                          gradient_clip=0.5, checkpoint_dir=tmp_path, device="cpu", progress=False)
        metrics = trainer.evaluate_model(val_loader)
        assert set(metrics) == {"loss", "accuracy", "n_examples"} and metrics["n_examples"] == 60
        epoch = trainer.train_epoch()
        assert 0 < epoch["grad_norm"] and epoch["tokens_per_second"] > 0

    @pytest.mark.parametrize("kwargs", [{"learning_rate": 0}, {"weight_decay": -1}, {"optimizer_type": "lion"},
                                        {"scheduler_type": "linear"}, {"accumulation_steps": 0}])
    def test_invalid_factory_arguments(self, tmp_path, kwargs):
        with pytest.raises(ValueError):
            make_trainer(tmp_path, **kwargs)


def test_metrics_log_holds_only_this_runs_epochs(tmp_path):
    first = make_trainer(tmp_path)
    first.train(epochs=3)
    resumed = make_trainer(tmp_path, seed=3)
    resumed.resume_training(tmp_path / "checkpoint_epoch_001.pt", additional_epochs=1)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    fresh = make_trainer(tmp_path, seed=4)
    fresh.train(epochs=1)
    assert [json.loads(l)["epoch"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.fixture(scope="module")
def imdb_vocabulary(imdb_tree):
    from src.data import TextPreprocessor, load_imdb

    return TextPreprocessor(max_vocab_size=25000).build_vocab(load_imdb(imdb_tree, "train").texts)


@pytest.fixture(scope="module")
def glove_cache(tmp_path_factory, real_data):
    """A cache folder holding the official zip: the loader extracts from it, no network."""
    from tests.helpers import GLOVE_ZIP

    cache = tmp_path_factory.mktemp("glove-cache")
    (cache / "glove.6B.zip").symlink_to(GLOVE_ZIP)
    return cache


class TestGloVeIntegration:
    def test_real_vectors_on_the_imdb_vocabulary(self, imdb_vocabulary, glove_cache):
        from src.models.lstm_model import LSTMClassifier
        from src.training import GloVeLoader, initialize_model_with_glove

        model = LSTMClassifier(vocab_size=imdb_vocabulary.vocab_size, embedding_dim=50, hidden_dim=8, n_layers=1)
        stats = initialize_model_with_glove(model, imdb_vocabulary, corpus="6B", dimension="50d",
                                            freeze_embeddings=True, cache_dir=glove_cache, progress=False)
        assert stats["coverage"] > 0.85 and stats["vocab_size"] == imdb_vocabulary.vocab_size
        assert stats["found"] + stats["oov_count"] == imdb_vocabulary.vocab_size - 2
        assert stats["embedding_dim"] == 50 and stats["source"].endswith("glove.6B.50d.txt")
        assert 0 < len(stats["oov_sample"]) <= 20
        weight = model.embedding.weight
        assert torch.count_nonzero(weight[0]) == 0  # <pad>
        vectors, _ = GloVeLoader(glove_cache).load_glove_embeddings(glove_cache / "glove.6B.50d.txt",
                                                                     vocab={"movie", "terrible"})
        for word in ("movie", "terrible"):
            assert torch.equal(weight[imdb_vocabulary.stoi[word]], torch.from_numpy(vectors[word]))
        ids = torch.tensor([[imdb_vocabulary.stoi["movie"], imdb_vocabulary.stoi["terrible"]]])
        model(ids).sum().backward()
        assert not weight.requires_grad and weight.grad is None
        assert model.fc.weight.grad is not None

    def test_capitalised_words_fall_back_to_lower_case(self, glove_cache):
        from src.data import TextPreprocessor
        from src.training import initialize_model_with_glove

        processor = TextPreprocessor(lowercase=False).build_vocab(["Movie Movie qwzxv"])
        model = tiny_model(vocab_size=processor.vocab_size, embedding_dim=50)
        stats = initialize_model_with_glove(model, processor, dimension="50d", cache_dir=glove_cache, progress=False)
        assert stats["found"] == 1 and stats["oov_sample"] == ["qwzxv"]
        assert model.embedding.weight.requires_grad

    def test_dimension_mismatch_names_both(self, glove_cache):
        from src.data import TextPreprocessor
        from src.training import initialize_model_with_glove

        processor = TextPreprocessor().build_vocab(["a film"])
        with pytest.raises(ValueError, match="50 dimensions but the model's embedding has only 8"):
            initialize_model_with_glove(tiny_model(vocab_size=processor.vocab_size), processor, dimension="50d",
                                        cache_dir=glove_cache)

    def test_a_wider_embedding_keeps_the_vectors_first_and_learns_the_rest(self, glove_cache):
        from src.data import TextPreprocessor
        from src.training import GloVeLoader, initialize_model_with_glove

        processor = TextPreprocessor().build_vocab(["movie terrible qwzxv " * 3])
        model = tiny_model(vocab_size=processor.vocab_size, embedding_dim=80)
        stats = initialize_model_with_glove(model, processor, dimension="50d", cache_dir=glove_cache, progress=False)
        assert stats["embedding_dim"] == 50 and stats["learned_dims"] == 30 and stats["found"] == 2
        vectors, _ = GloVeLoader(glove_cache).load_glove_embeddings(glove_cache / "glove.6B.50d.txt",
                                                                     vocab={"movie", "terrible"})
        weight = model.embedding.weight.detach()  # [V, 80]
        for word in ("movie", "terrible"):
            assert torch.equal(weight[processor.stoi[word], :50], torch.from_numpy(vectors[word]))
        learned = weight[2:, 50:]  # noise with the vectors' spread, not zeros
        assert torch.count_nonzero(learned) == learned.numel() and 0.1 < float(learned.std()) < 1.0
        assert torch.count_nonzero(weight[processor.pad_idx]) == 0 and model.embedding.weight.requires_grad

    def test_a_vocabulary_of_another_size_is_refused_before_any_download(self, tmp_path):
        from src.data import TextPreprocessor
        from src.training import initialize_model_with_glove

        processor = TextPreprocessor().build_vocab(["a film"])
        with pytest.raises(ValueError, match=f"the vocabulary has {processor.vocab_size} words but the model's "
                                             "embedding has 30 rows"):
            initialize_model_with_glove(tiny_model(embedding_dim=50), processor, dimension="50d",
                                        cache_dir=tmp_path / "glove", base_url="http://127.0.0.1:9/")
        assert not (tmp_path / "glove").exists()


def test_same_seed_same_run_on_cpu(tmp_path):
    first = make_trainer(tmp_path / "a", seed=3).train(epochs=2)
    second = make_trainer(tmp_path / "b", seed=3).train(epochs=2)
    assert first["train_losses"] == second["train_losses"] and first["val_losses"] == second["val_losses"]


def test_last_short_accumulation_group_gets_a_full_weight_gradient(tmp_path):
    trainer = make_trainer(tmp_path, accumulation_steps=5)
    batches = list(trainer.train_loader)
    assert len(batches) % 5 != 0  # the epoch ends with a shorter group
    divisors = []
    original = trainer.train_step

    def record(ids, lengths, labels, step=1, optimizer_step=True, group_size=None):
        divisors.append(group_size)
        return original(ids, lengths, labels, step, optimizer_step, group_size)

    trainer.train_step = record
    trainer.train(epochs=1)
    remainder = len(batches) % 5
    assert divisors == [5] * (len(batches) - remainder) + [remainder] * remainder


class FakeClock:
    """``time.perf_counter`` for the time-limit tests: an epoch's training steps take ``epoch_seconds``."""

    def __init__(self, monkeypatch, trainer, epoch_seconds: float = 60.0):
        self.now = 0.0
        monkeypatch.setattr("time.perf_counter", lambda: self.now)
        trainer.time_budget.started = 0.0
        step, self.per_step = trainer.train_step, epoch_seconds / len(trainer.train_loader)

        def timed_step(*args, **kwargs):
            self.now += self.per_step
            return step(*args, **kwargs)

        trainer.train_step = timed_step


class TestTimeLimit:
    def test_training_stops_before_an_epoch_that_would_end_past_the_limit(self, tmp_path, monkeypatch):
        trainer = make_trainer(tmp_path, max_minutes=3.5)
        FakeClock(monkeypatch, trainer)
        history = trainer.train(epochs=6, early_stopping_patience=5)
        # epochs end at 1, 2 and 3 minutes; a fourth would end at 4 > 3.5
        assert history["epochs_completed"] == 3 and history["time_limit_reached"] and history["stopped_early"]
        assert (tmp_path / "checkpoint_epoch_003.pt").is_file()
        assert trainer.get_training_summary()["training_status"]["time_limit_reached"] is True

    def test_a_cosine_schedule_ends_with_the_epochs_the_limit_leaves_time_for(self, tmp_path, monkeypatch):
        trainer = make_trainer(tmp_path, max_minutes=4.5, scheduler_type="cosine", epochs=10)
        FakeClock(monkeypatch, trainer)
        history = trainer.train(epochs=10)
        # after the first epoch (60 s) three more fit in 270 s: the rate falls over 4 epochs, not 10
        assert history["epochs_completed"] == 4 and history["time_limit_reached"]
        assert history["learning_rates"] == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
        assert load_state(tmp_path / "checkpoint_epoch_002.pt")["scheduler_state"]["length"] == 4

    def test_a_cosine_schedule_follows_epochs_that_turn_out_slower(self, tmp_path, monkeypatch):
        trainer = make_trainer(tmp_path, max_minutes=6.5, scheduler_type="cosine", epochs=10)
        clock = FakeClock(monkeypatch, trainer)
        trainer.train(epochs=1)
        assert trainer.scheduler.length == 6  # 5 more epochs of 60 s fit in the 330 s left
        clock.per_step *= 2  # the machine gets busy: epochs of 120 s
        history = trainer.train(epochs=9)
        # epoch 2 ends at 180 s, and one more of 120 s fits in the 210 s left: the course is 3 epochs
        assert trainer.scheduler.length == 3 and history["epochs_completed"] == 3
        assert history["learning_rates"] == pytest.approx([0.01, 0.01 * (1 + math.cos(math.pi / 6)) / 2, 0.0025])

    def test_a_cosine_course_cut_short_by_the_limit_is_planned_again_on_a_resume_without_it(self, tmp_path, monkeypatch):
        first = make_trainer(tmp_path, max_minutes=4.5, scheduler_type="cosine", epochs=10)
        FakeClock(monkeypatch, first)
        first.train(epochs=10)  # 4 epochs on a course of 4: the rate after the last is 0
        assert load_state(tmp_path / "checkpoint_epoch_004.pt")["optimizer_state"]["param_groups"][0]["lr"] == 0.0
        resumed = make_trainer(tmp_path, scheduler_type="cosine", epochs=10)
        history = resumed.resume_training(tmp_path / "checkpoint_epoch_004.pt", additional_epochs=2)
        assert history["epochs_completed"] == 6
        assert history["learning_rates"][4:] == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 10)) / 2
                                                               for e in (4, 5)])

    def test_the_epoch_that_stops_at_the_limit_is_saved_whatever_save_every_says(self, tmp_path, monkeypatch):
        trainer = make_trainer(tmp_path, max_minutes=3.5, scheduler_type=None)
        FakeClock(monkeypatch, trainer)
        scripted_validation(trainer, [0.5, 0.4, 0.45, 0.6])  # epoch 3 neither best nor due by save_every
        history = trainer.train(epochs=6, save_every=5)
        assert history["epochs_completed"] == 3 and history["time_limit_reached"]
        assert load_state(tmp_path / "checkpoint_epoch_003.pt")["epoch"] == 3  # so --resume continues after it

    def test_without_a_limit_every_epoch_runs(self, tmp_path, monkeypatch):
        trainer = make_trainer(tmp_path)
        FakeClock(monkeypatch, trainer, epoch_seconds=3600.0)
        history = trainer.train(epochs=4)
        assert history["epochs_completed"] == 4 and not history["time_limit_reached"]

    def test_a_resumed_run_counts_the_time_its_checkpoint_spent(self, tmp_path, monkeypatch):
        first = make_trainer(tmp_path, max_minutes=3.5)
        FakeClock(monkeypatch, first)
        first.train(epochs=2)
        assert load_state(tmp_path / "checkpoint_epoch_002.pt")["time_budget"]["spent"] == pytest.approx(120.0)
        resumed = make_trainer(tmp_path, max_minutes=3.5)
        FakeClock(monkeypatch, resumed)  # the new process's clock starts at 0
        history = resumed.resume_training(tmp_path / "checkpoint_epoch_002.pt", additional_epochs=4)
        assert history["epochs_completed"] == 3 and history["time_limit_reached"]

    def test_after_a_mid_epoch_resume_the_next_epoch_is_estimated_whole(self, tmp_path, monkeypatch):
        from src.exceptions import TrainingInterrupted
        from src.training.trainer import MID_EPOCH_NAME
        from tests.helpers import interrupt_at

        first = make_trainer(tmp_path, max_minutes=2.6)
        FakeClock(monkeypatch, first)  # 12 steps of 5 s an epoch
        interrupt_at(first, 18)  # the 6th step of epoch 2, at 85-90 s
        with pytest.raises(TrainingInterrupted):
            first.train(epochs=6)
        resumed = make_trainer(tmp_path, max_minutes=2.6)
        FakeClock(monkeypatch, resumed)
        history = resumed.resume_training(tmp_path / MID_EPOCH_NAME, additional_epochs=4)
        # epoch 2 ends at 120 s; its part after the resume took 30 s, but the epoch took 60: a third epoch
        # would end at 180 s, past the limit of 156 (estimated from the 30 s part, it would seem to fit)
        assert history["epochs_completed"] == 2 and history["time_limit_reached"]

    def test_a_spent_budget_stops_a_resumed_run_before_any_epoch(self, tmp_path, monkeypatch):
        first = make_trainer(tmp_path, max_minutes=2.5)
        FakeClock(monkeypatch, first)
        assert first.train(epochs=6)["epochs_completed"] == 2
        resumed = make_trainer(tmp_path, max_minutes=2.5)
        FakeClock(monkeypatch, resumed)
        history = resumed.resume_training(tmp_path / "checkpoint_epoch_002.pt", additional_epochs=4)
        assert history["epochs_completed"] == 2 and history["time_limit_reached"]

    @pytest.mark.parametrize("spent", [-1.0, float("nan"), "soon", True])
    def test_a_checkpoint_with_a_bad_time_spent_is_refused(self, tmp_path, spent):
        trainer = make_trainer(tmp_path, max_minutes=10)
        trainer.train(epochs=1)
        state = load_state(tmp_path / "checkpoint_epoch_001.pt")
        state["time_budget"] = {"spent": spent}
        with pytest.raises(CheckpointError, match="time spent"):
            make_trainer(tmp_path / "other", max_minutes=10).load_state_dict(state)

    def test_a_checkpoint_from_before_the_time_limit_loads_as_not_reached(self, tmp_path):
        make_trainer(tmp_path).train(epochs=1)
        state = load_state(tmp_path / "checkpoint_epoch_001.pt")
        del state["history"]["time_limit_reached"]
        trainer = make_trainer(tmp_path / "other")
        trainer.load_state_dict(state)
        assert trainer.history["time_limit_reached"] is False and trainer.history["epochs_completed"] == 1
        assert trainer.get_training_summary()["training_status"]["time_limit_reached"] is False

    @pytest.mark.parametrize("minutes", [0, -1])
    def test_the_limit_must_be_positive(self, tmp_path, minutes):
        with pytest.raises(ValueError, match="max_minutes must be positive"):
            make_trainer(tmp_path, max_minutes=minutes)

    def test_the_pipeline_counts_the_run_from_its_start_and_says_so_in_the_card(self, tmp_path, monkeypatch):
        import time

        from src.config import TrainConfig
        from src.training import pipeline
        from src.training.pipeline import run_training
        from tests.helpers import synthetic_reviews, write_imdb_tree

        seen = {}
        load_data, create = pipeline._load_data, pipeline.create_trainer

        def timed_load(*args):
            seen["data_loaded_at"] = time.perf_counter()
            return load_data(*args)

        def recording_create(*args, **kwargs):
            seen["run_started"] = kwargs["run_started"]
            return create(*args, **kwargs)

        monkeypatch.setattr(pipeline, "_load_data", timed_load)
        monkeypatch.setattr(pipeline, "create_trainer", recording_create)
        tree = write_imdb_tree(tmp_path / "data", {"train": synthetic_reviews(60), "test": synthetic_reviews(20, seed=1)})
        # a limit shorter than loading the data: the first epoch always runs, no second one
        metrics = run_training(TrainConfig(
            data_dir=str(tree), output_dir=str(tmp_path / "model"), checkpoint_dir=str(tmp_path / "run"), epochs=3,
            max_minutes=1e-6, embedding_dim=8, hidden_dim=4, n_layers=1, max_length=20, batch_size=16,
            pretrain_lm_epochs=0, quiet=True, tensorboard=False))
        assert seen["run_started"] < seen["data_loaded_at"]  # loading the data counts
        assert metrics["history"]["epochs_completed"] == 1 and metrics["history"]["time_limit_reached"]
        assert "stopped at the time limit (--max-minutes)" in (tmp_path / "model" / "MODEL_CARD.md").read_text()

"""EarlyStopping driven by scripted metric lists; CheckpointManager with a tiny model."""

import copy
import json

import pytest
import torch

from src.exceptions import CheckpointError
from src.training import CheckpointManager, EarlyStopping, create_checkpoint_manager, create_early_stopping
from src.utils.checkpoint_io import load_state, save_state
from src.training import create_trainer
from src.training.monitor import BestTracker, is_improvement
from src.training.schedulers import create_scheduler, step_scheduler
from src.utils.checkpoint_io import CHECKPOINT_FORMAT_VERSION
from tests.helpers import make_trainer, synthetic_loaders, tiny_model


def stop_epoch(values, **kwargs):
    """The epoch (1-based) at which early stopping fires for these values, or None."""
    stopper = create_early_stopping(**kwargs)
    for epoch, value in enumerate(values, start=1):
        if stopper(value, None, epoch):
            return epoch
    return None


def test_improvement_rule():
    assert is_improvement(0.5, 0.6, "min", 0.05)
    assert not is_improvement(0.56, 0.6, "min", 0.05)
    assert is_improvement(0.9, 0.8, "max", 0.05) and not is_improvement(0.84, 0.8, "max", 0.05)
    assert not is_improvement(float("nan"), 0.6, "min", 0.0)


@pytest.mark.parametrize("values, kwargs, expected", [
    ([0.9, 0.8, 0.85, 0.84, 0.83], {"patience": 3}, 5),
    ([0.9, 0.8, 0.85, 0.79, 0.83, 0.9], {"patience": 3}, None),
    ([0.9, 0.8995, 0.8992, 0.8991], {"patience": 3, "min_delta": 0.001}, 4),  # gains below min_delta
    ([0.6, 0.7, 0.7, 0.65], {"patience": 2, "monitor": "val_accuracy"}, 4),
    ([0.6, 0.7, 0.8, 0.9], {"patience": 1, "monitor": "val_accuracy"}, None),
    ([0.5, float("nan"), float("nan")], {"patience": 2}, 3),
])
def test_early_stopping_on_scripted_metrics(values, kwargs, expected):
    assert stop_epoch(values, **kwargs) == expected


def test_restore_best_weights_and_state_dict():
    model = tiny_model()
    stopper = EarlyStopping(patience=2, monitor="val_loss")
    stopper(0.5, model, 1)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    stopper(0.7, model, 2)
    copy = EarlyStopping()
    copy.load_state_dict(stopper.state_dict())
    assert (copy.counter, copy.best_epoch, copy.best_value, copy.monitor) == (1, 1, 0.5, "val_loss")
    assert copy(0.8, model, 3) is True
    assert copy.restore_best(model)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())


def test_unknown_monitor_needs_a_mode():
    with pytest.raises(ValueError, match="mode='min' or 'max'"):
        EarlyStopping(monitor="f1")
    assert EarlyStopping(monitor="f1", mode="max").mode == "max"


def test_plateau_scheduler_follows_the_tracker():
    optimizer = torch.optim.Adam(tiny_model().parameters(), lr=1.0)
    tracker = BestTracker("val_loss", min_delta=0.01)
    scheduler = create_scheduler(optimizer, "plateau", plateau_patience=1)
    for loss in [1.0, 0.995, 0.992]:  # improvements smaller than min_delta do not count
        step_scheduler(scheduler, tracker.update(loss), {"loss": loss, "accuracy": 0.5})
    assert optimizer.param_groups[0]["lr"] == 0.5
    restored = create_scheduler(optimizer, "plateau")
    restored.load_state_dict(scheduler.state_dict())
    assert (restored.patience, restored.bad_epochs) == (1, 0)


def test_slanted_triangular_rises_over_a_tenth_of_the_steps_then_falls_to_a_32nd():
    optimizer = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 3.2},
                                  {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.32}])
    scheduler = create_scheduler(optimizer, "slanted_triangular", epochs=10, steps_per_epoch=10)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(110):
        scheduler.step_batch()
        step_scheduler(scheduler, improved=False, val_metrics={"loss": 1.0, "accuracy": 0.5})  # per step only
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.1) and rates[10] == pytest.approx(3.2) and max(rates) == rates[10]
    assert rates[5] == pytest.approx(0.1 + 0.5 * 3.1) and rates[55] == pytest.approx(0.1 + 0.5 * 3.1)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11])) and all(a > b for a, b in zip(rates[10:100], rates[11:101]))
    assert rates[100:] == pytest.approx([0.1] * 11)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.01)  # each group from its own peak
    fresh = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 3.2},
                              {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.32}])
    restored = create_scheduler(fresh, "slanted_triangular", epochs=1, steps_per_epoch=3)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.total_steps == 100 and fresh.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        create_scheduler(optimizer, "slanted_triangular", epochs=10)


def test_cosine_falls_to_zero_over_its_length_which_can_be_refitted_and_resumes():
    optimizer = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 2.0},
                                  {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.2}])
    scheduler = create_scheduler(optimizer, "cosine", epochs=4)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(5):
        step_scheduler(scheduler, improved=False, val_metrics={"loss": 1.0, "accuracy": 0.5})
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([2.0, 1.0 + 2 ** -0.5, 1.0, 1.0 - 2 ** -0.5, 0.0, 0.0])  # stays at zero after
    assert optimizer.param_groups[1]["lr"] == 0.0
    scheduler.fit_length(10)  # five of ten epochs done: half way down
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0) and optimizer.param_groups[1]["lr"] == pytest.approx(0.1)
    fresh = torch.optim.Adam([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 2.0},
                              {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 2.0}])
    restored = create_scheduler(fresh, "cosine", epochs=3)
    restored.load_state_dict(scheduler.state_dict())
    assert (restored.length, restored.epochs, restored.planned) == (10, 5, 3)  # planned: its own --epochs
    assert [group["lr"] for group in fresh.param_groups] == pytest.approx([1.0, 0.1])
    with pytest.raises(ValueError, match="at least one epoch"):
        scheduler.fit_length(0)
    with pytest.raises(ValueError, match="2 peak rates for 1 parameter groups"):
        create_scheduler(torch.optim.Adam(torch.nn.Linear(2, 1).parameters()), "cosine").load_state_dict(
            scheduler.state_dict())


def test_cosine_resumes_from_a_checkpoint_of_torchs_cosine_annealing():
    model = torch.nn.Linear(2, 1)
    old_optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(old_optimizer, T_max=6)
    for _ in range(2):
        old_optimizer.step()
        old.step()
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    scheduler = create_scheduler(optimizer, "cosine", epochs=20)
    scheduler.load_state_dict(old.state_dict())
    assert (scheduler.length, scheduler.epochs) == (6, 2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(old_optimizer.param_groups[0]["lr"])


def test_layer_lr_decay_gives_each_layer_its_own_rate_below_the_classifiers(tmp_path):
    from src.training.trainer import parameter_groups

    model = tiny_model(n_layers=3)
    model.embedding.weight.requires_grad_(False)
    groups = parameter_groups(model, 1.0, 2.0)
    assert [group["lr"] for group in groups] == [1.0, 0.5, 0.25, 0.125]  # fc, layer 3, 2, 1; the embedding is frozen
    assert groups[0]["params"] == list(model.fc.parameters())
    assert groups[1]["params"] == list(model.layers[2].parameters())
    assert sum(len(group["params"]) for group in groups) == len([p for p in model.parameters() if p.requires_grad])
    assert len(parameter_groups(model, 1.0, 1.0)) == 1
    with pytest.raises(ValueError, match="layer_lr_decay and gradual_unfreezing need a model with embedding, layers"):
        parameter_groups(torch.nn.Linear(2, 1), 1.0, 2.6)
    with pytest.raises(ValueError, match="layer_lr_decay"):
        make_trainer(tmp_path, layer_lr_decay=0.5)


def test_adam_takes_its_fused_kernel_on_the_cpu_and_updates_as_the_loop_does(tmp_path):
    """build_optimizer gives Adam and AdamW the fused CPU kernel (create_trainer's and pretraining's optimizer)
    and leaves other optimizers as they are; a fused step moves the weights as the default loop does."""
    from src.training.trainer import build_optimizer

    trainer = make_trainer(tmp_path, optimizer_type="adamw")
    assert trainer.optimizer.param_groups[0]["fused"] is True
    sgd = build_optimizer(torch.optim.SGD, (p for p in tiny_model().parameters()), "cpu", lr=0.1)
    assert "fused" not in sgd.defaults or not sgd.defaults["fused"]
    weights = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    copies = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    starts = [w.detach().clone() for w in weights]
    fused = build_optimizer(torch.optim.Adam, weights, torch.device("cpu"), lr=0.01, weight_decay=1e-5)
    loop = torch.optim.Adam(copies, lr=0.01, weight_decay=1e-5, foreach=False)
    for step in range(3):
        for a, b in zip(weights, copies):
            a.grad = torch.full_like(a, 0.1 * (step + 1))
            b.grad = a.grad.clone()
        fused.step()
        loop.step()
    assert fused.param_groups[0]["fused"] is True and loop.param_groups[0]["fused"] is not True
    assert all(torch.allclose(a, b, atol=1e-6) and not torch.equal(a, start)
               for a, b, start in zip(weights, copies, starts))


def test_a_checkpoint_written_on_a_gpu_resumes_on_the_cpu_with_the_fused_kernel(tmp_path):
    """torch takes a saved optimizer's group settings whole: a CUDA checkpoint (fused=None) resumed on the CPU
    with the loop. The resumed optimizer keeps its own kernel, and the saved buffers and rate."""
    trainer = make_trainer(tmp_path / "gpu")
    trainer.train(epochs=1)
    state = copy.deepcopy(trainer.state_dict())
    for group in state["optimizer_state"]["param_groups"]:
        group.update(fused=None, foreach=None, lr=0.005)  # as build_optimizer leaves them on CUDA
    resumed = make_trainer(tmp_path / "cpu")
    resumed.load_state_dict(state)
    group = resumed.optimizer.param_groups[0]
    assert group["fused"] is True and group["foreach"] is None and group["lr"] == 0.005
    saved = state["optimizer_state"]["state"][0]["exp_avg"]
    assert torch.equal(resumed.optimizer.state[group["params"][0]]["exp_avg"], saved)
    resumed.train(epochs=1)  # the fused kernel steps on the loaded buffers
    assert resumed.epoch == 2 and resumed.optimizer.param_groups[0]["fused"] is True


def test_gradual_unfreezing_trains_one_more_stage_each_epoch_from_the_top(tmp_path):
    trainer = make_trainer(tmp_path, gradual_unfreezing=True, model={"n_layers": 2})
    snapshots = [{name: value.clone() for name, value in trainer.model.state_dict().items()}]
    evaluate = trainer.evaluate_model

    def snapshot_after_training(loader):  # called once each epoch's training is done
        if loader is trainer.val_loader:
            snapshots.append({name: value.clone() for name, value in trainer.model.state_dict().items()})
        return evaluate(loader)

    trainer.evaluate_model = snapshot_after_training
    trainer.train(epochs=4)
    stages = ["fc", "layers.1", "layers.0", "embedding"]

    def changed(before, after):
        return {stage for stage in stages
                if any(not torch.equal(before[n], after[n]) for n in before if n.startswith(stage + "."))}

    assert [changed(a, b) for a, b in zip(snapshots, snapshots[1:])] == [set(stages[:k]) for k in range(1, 5)]


def test_one_best_epoch_for_early_stopping_the_checkpoint_and_the_schedule(tmp_path, monkeypatch):
    """Gains smaller than min_delta are no gains for any of the three, and the weights that
    train() restores are those of best_model.pt."""
    train_loader, val_loader = synthetic_loaders()
    trainer = create_trainer(tiny_model(), train_loader, val_loader, checkpoint_dir=tmp_path, min_delta=0.01,
                             progress=False)
    scripted = iter([1.0, 0.995, 0.98, 0.975, 0.972, 0.971, 0.97])  # epoch 3 gains 0.02; 4-7 less than 0.01
    evaluate = trainer.evaluate_model
    monkeypatch.setattr(trainer, "evaluate_model", lambda loader: {**evaluate(loader), "loss": next(scripted)})
    history = trainer.train(10, early_stopping_patience=4)
    assert history["epochs_completed"] == 7 and history["stopped_early"]
    assert history["best_epoch"] == trainer.early_stopping.best_epoch == trainer.best.best_epoch == 3
    assert trainer.checkpoint_manager.best_path == "checkpoint_epoch_003.pt"
    assert trainer.checkpoint_manager.load_best_checkpoint("loss").name == "checkpoint_epoch_003.pt"
    lrs = history["learning_rates"]
    assert lrs[:6] == [0.001] * 6 and lrs[6] == 0.0005  # three epochs without a gain, then halved
    best_weights = load_state(tmp_path / "best_model.pt")["model_state"]
    assert all(torch.equal(best_weights[k], v) for k, v in trainer.model.state_dict().items())


def save(manager, model, epoch, val_loss, val_accuracy, is_best=False):
    return manager.save_checkpoint(model, None, epoch, train_loss=1.0, val_loss=val_loss,
                                   val_accuracy=val_accuracy, is_best=is_best)


def test_retention_keeps_recent_and_best(tmp_path):
    manager = create_checkpoint_manager(tmp_path, max_checkpoints=2, save_best_n=1)
    model = tiny_model()
    losses = [0.3, 0.5, 0.6, 0.7, 0.8]  # epoch 1 best by loss
    accuracies = [0.6, 0.9, 0.5, 0.5, 0.5]  # epoch 2 best by accuracy
    for epoch, (loss, acc) in enumerate(zip(losses, accuracies), start=1):
        save(manager, model, epoch, loss, acc, is_best=epoch == 1)
    files = sorted(p.name for p in tmp_path.glob("checkpoint_epoch_*.pt"))
    assert files == ["checkpoint_epoch_001.pt", "checkpoint_epoch_002.pt", "checkpoint_epoch_004.pt",
                     "checkpoint_epoch_005.pt"]
    assert manager.load_best_checkpoint("loss").name == "checkpoint_epoch_001.pt"
    assert manager.load_best_checkpoint("accuracy").name == "checkpoint_epoch_002.pt"
    registry = json.loads((tmp_path / "checkpoint_registry.json").read_text())
    assert registry["best_by_loss"] == ["checkpoint_epoch_001.pt"]
    assert registry["best_by_accuracy"] == ["checkpoint_epoch_002.pt"]
    assert {e["file"] for e in registry["entries"]} == set(files)
    assert (tmp_path / "best_model.pt").is_file()
    assert [c["epoch"] for c in manager.list_checkpoints()] == [1, 2, 4, 5]


def test_cleanup_never_deletes_what_the_registry_names(tmp_path):
    manager = CheckpointManager(tmp_path, max_checkpoints=1, save_best_n=2)
    model = tiny_model()
    for epoch in range(1, 8):
        save(manager, model, epoch, val_loss=1.0 / epoch if epoch < 4 else 2.0, val_accuracy=0.1 * epoch)
        registry = json.loads((tmp_path / "checkpoint_registry.json").read_text())
        named = {e["file"] for e in registry["entries"]} | set(registry["best_by_loss"]) | set(registry["best_by_accuracy"])
        assert all((tmp_path / name).is_file() for name in named)


def test_registry_is_reloaded_by_a_new_manager(tmp_path):
    model = tiny_model()
    first = CheckpointManager(tmp_path)
    save(first, model, 1, 0.4, 0.8)
    save(first, model, 2, 0.3, 0.7)
    second = CheckpointManager(tmp_path)
    assert second.load_best_checkpoint("loss").name == "checkpoint_epoch_002.pt"
    assert second.latest_checkpoint().name == "checkpoint_epoch_002.pt"


def test_checkpoint_info(tmp_path):
    manager = CheckpointManager(tmp_path)
    model = tiny_model(hidden_dim=5)
    path = save(manager, model, 3, 0.25, 0.875)
    info = manager.get_checkpoint_info(path)
    assert info["epoch"] == 3 and info["metrics"]["val_accuracy"] == 0.875
    assert info["model_config"]["hidden_dim"] == 5 and info["format_version"] == CHECKPOINT_FORMAT_VERSION and info["size_bytes"] > 0


def test_damaged_and_foreign_files_are_refused(tmp_path):
    path = save_state(tmp_path / "good.pt", {"model_state": tiny_model().state_dict()})
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    torch.save({"format_version": 999}, tmp_path / "future.pt")
    (tmp_path / "text.pt").write_text("hello\n")  # torch's legacy unpickler raised KeyError on these two
    (tmp_path / "passwd.pt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "folder.pt").mkdir()
    for name, message in [("truncated.pt", "damaged"), ("empty.pt", "damaged"), ("foreign.pt", "not a checkpoint"),
                          ("future.pt", "format version 999"), ("missing.pt", "does not exist"),
                          ("text.pt", "damaged or not a checkpoint"), ("passwd.pt", "damaged or not a checkpoint"),
                          ("folder.pt", "is a folder")]:
        with pytest.raises(CheckpointError, match=message):
            load_state(tmp_path / name)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format_version": 1, "payload": _Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not plain tensors") as refused:
        load_state(tmp_path / "evil.pt")
    assert not marker.exists()
    message = str(refused.value)  # names what it refused, and never passes on torch's advice to load it unsafely
    assert "(it names io.open)" in message and "weights_only" not in message and "\n" not in message


def test_a_mode_that_contradicts_a_known_metric_is_refused():
    """mode="min" for accuracy would keep the worst epoch as the best and stop on improvements."""
    with pytest.raises(ValueError, match="mode='min' contradicts val_accuracy, which is better when it goes up"):
        create_early_stopping(patience=2, monitor="val_accuracy", mode="min")
    with pytest.raises(ValueError, match="mode='max' contradicts val_loss, which is better when it goes down"):
        BestTracker("val_loss", mode="max")
    assert create_early_stopping(patience=2, monitor="val_accuracy", mode="max").tracker.mode == "max"
    assert BestTracker("f1_macro", mode="max").mode == "max"  # a metric of the user's: the mode given


def test_resuming_with_another_vocabulary_of_the_same_size_is_refused(tmp_path):
    """The weights learned one word per row; another vocabulary of that size would read every word as another."""
    from src.data import TextPreprocessor

    first = TextPreprocessor().build_vocab([" ".join(f"word{i}" for i in range(28))])
    other = TextPreprocessor().build_vocab([" ".join(f"other{i}" for i in range(28))])
    assert first.vocab_size == other.vocab_size == 30  # the tiny model's embedding
    trainer = make_trainer(tmp_path / "a", preprocessor=first)
    trainer.train(epochs=1)
    checkpoint = tmp_path / "a" / "checkpoint_epoch_001.pt"
    assert make_trainer(tmp_path / "b", preprocessor=first).load_checkpoint(checkpoint)["epoch"] == 1
    with pytest.raises(CheckpointError, match="was trained with another vocabulary than this trainer's preprocessor"):
        make_trainer(tmp_path / "c", preprocessor=other).load_checkpoint(checkpoint)


def test_resuming_with_another_kind_of_schedule_is_refused(tmp_path):
    """torch's StepLR would take a cosine schedule's state without a word and go on with neither schedule."""
    trainer = make_trainer(tmp_path / "a", scheduler_type="cosine")
    trainer.train(epochs=1)
    checkpoint = tmp_path / "a" / "checkpoint_epoch_001.pt"
    assert make_trainer(tmp_path / "b", scheduler_type="cosine").load_checkpoint(checkpoint)["epoch"] == 1
    other = make_trainer(tmp_path / "c")
    other.scheduler = torch.optim.lr_scheduler.StepLR(other.optimizer, step_size=5)
    with pytest.raises(CheckpointError, match="its learning-rate schedule is a Cosine, this trainer's a StepLR; "
                                              "build the trainer with the same scheduler"):
        other.load_checkpoint(checkpoint)


@pytest.mark.parametrize("registry", [{"entries": [1]}, {"entries": {"a": 1}}, {"entries": [], "best_path": "/etc/x"},
                                      {"entries": [{"file": "../x.pt", "epoch": 1, "val_loss": 1.0,
                                                    "val_accuracy": 0.5}]}])
def test_a_damaged_or_crafted_registry_file_is_ignored_with_a_warning(tmp_path, caplog, registry):
    """The registry names the files that pruning deletes: a JSON file that another hand wrote is dropped whole."""
    (tmp_path / "checkpoint_registry.json").write_text(json.dumps(registry))
    with caplog.at_level("WARNING"):
        manager = CheckpointManager(tmp_path)
    assert manager.entries == [] and manager.best_path is None
    assert "ignoring damaged checkpoint registry" in caplog.text

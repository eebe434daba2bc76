"""The example scripts run on a tiny subset of the real data, one after another, as ``__main__``
in this process (so the test does not pay for a new interpreter and torch import each time)."""

import runpy
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.fixture
def run(monkeypatch, capsys):
    def run_script(script, *args):
        monkeypatch.setattr(sys, "argv", [script, *args])
        runpy.run_path(str(REPO_ROOT / "examples" / script), run_name="__main__")
        return capsys.readouterr().out
    return run_script


def test_quick_train_resume_and_predict(run, tmp_path, imdb_tree):
    model_dir, checkpoints = str(tmp_path / "model"), str(tmp_path / "checkpoints")
    out = run("quick_train.py", "--data-dir", str(imdb_tree), "--max-train-samples", "300",
              "--max-test-samples", "100", "--epochs", "1", "--output-dir", model_dir, "--checkpoint-dir", checkpoints)
    assert "test accuracy" in out
    out = run("resume_training.py", "--data-dir", str(imdb_tree), "--checkpoint-dir", checkpoints,
              "--max-train-samples", "300", "--epochs", "1")
    assert "now 2 epochs" in out
    out = run("predict_from_python.py", "--model-dir", model_dir, "A joy to watch.", "Dreadful.")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] in ("positive", "negative") and lines[1].endswith("Dreadful.")
    evaluation = tmp_path / "evaluation"
    out = run("evaluate_model.py", "--model-dir", model_dir, "--data-dir", str(imdb_tree), "--output-dir",
              str(evaluation), "--max-samples", "200")
    assert "ROC-AUC" in out and (evaluation / "evaluation.json").is_file() and (evaluation / "roc_curve.png").is_file()


@pytest.mark.parametrize("script, args, message", [
    ("predict_from_python.py", ["--model-dir", "{tmp}/none", "Fine."], "{tmp}/none is not a model directory"),
    ("evaluate_model.py", ["--model-dir", "{tmp}/none", "--data-dir", "{tmp}/none"], "data directory {tmp}/none"),
])
def test_an_example_ends_a_project_error_with_its_one_line(run, tmp_path, script, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run(script, *(arg.format(tmp=tmp_path) for arg in args))
    assert str(exit_info.value).startswith(f"error: {message.format(tmp=tmp_path)}")


def test_train_with_glove(run, tmp_path, imdb_tree, real_data):
    cache = tmp_path / "glove"
    cache.mkdir()
    (cache / "glove.6B.zip").symlink_to(real_data / "glove" / "glove.6B.zip")
    out = run("train_with_glove.py", "--data-dir", str(imdb_tree), "--glove-cache-dir", str(cache),
              "--max-train-samples", "300", "--epochs", "1", "--checkpoint-dir", str(tmp_path / "run"))
    assert "GloVe covers" in out and "test accuracy" in out


@pytest.mark.parametrize("sweep", sorted((REPO_ROOT / "bench" / "sweeps").glob("*.json")), ids=lambda p: p.stem)
def test_every_sweep_variant_is_a_valid_training_config(sweep):
    """A typo in a sweep file would otherwise surface only on the GPU machine, minutes into its time."""
    import json

    from src.config import TrainConfig

    variants = json.loads(sweep.read_text())
    assert variants
    for settings in variants.values():
        TrainConfig.from_settings(settings)  # unknown names and impossible values raise


def test_the_gpu_sweep_trains_the_shipped_large_recipe():
    """bench/README's large-recipe row must describe configs/large-gpu.yaml, not a variant that drifted from it."""
    import json

    from src.training.train_model import read_config_file

    variant = json.loads((REPO_ROOT / "bench" / "sweeps" / "pretrained-encoder.json").read_text())["large_gpu"]
    variant.pop("max_minutes")
    assert variant == read_config_file(str(REPO_ROOT / "configs" / "large-gpu.yaml"))


def test_the_next_gpu_sweep_trains_the_shipped_recipes():
    """The one-layer seeds (in float32 and with --amp) and the large recipe of the GPU sweep are the shipped
    files' settings (the sweep's own --max-minutes replaces the recommended file's time limit)."""
    import json

    from src.training.train_model import read_config_file

    variants = json.loads((REPO_ROOT / "bench" / "sweeps" / "gpu-next.json").read_text())
    recommended = read_config_file(str(REPO_ROOT / "configs" / "recommended.yaml"))
    assert recommended.pop("max_minutes") == 56
    for name, seed in (("rec1", None), ("rec1_s1", 1), ("rec1_s2", 2)):
        variant = dict(variants[name])
        assert variant.pop("seed", None) == seed and variant == {**recommended, "embedding_dim": 50}
        assert variants[f"{name}_amp"] == {**variants[name], "amp": True}  # the same seed in bfloat16
    assert variants["large_gpu"] == read_config_file(str(REPO_ROOT / "configs" / "large-gpu.yaml"))


def test_the_adversarial_strength_sweep_changes_only_the_strength_and_the_seed():
    """Each variant of bench/sweeps/adversarial-strength.json is the shipped recommended settings with its own
    --adversarial-eps and seed, so its table compares strengths and nothing else."""
    import json

    from src.training.train_model import read_config_file

    recommended = read_config_file(str(REPO_ROOT / "configs" / "recommended.yaml"))
    recommended.pop("max_minutes")  # the sweep's own --max-minutes replaces it
    assert recommended.pop("adversarial_eps") == 1.0
    variants = json.loads((REPO_ROOT / "bench" / "sweeps" / "adversarial-strength.json").read_text())
    for name, variant in variants.items():
        strength, _, seed = name.partition("_s")
        assert variant.pop("adversarial_eps") == {"rec1": 1.0, "eps2": 2.0, "eps3": 3.0}[strength], name
        assert variant.pop("seed", 42) == (int(seed) if seed else 42), name
        assert variant == {**recommended, "embedding_dim": 50}, name


def test_the_accuracy_bench_takes_checked_settings_on_top_of_a_preset():
    from bench.accuracy import parse_settings

    assert parse_settings(["scheduler=slanted_triangular", "epochs=5", "max_minutes=55"]) == {
        "scheduler": "slanted_triangular", "epochs": 5, "max_minutes": 55.0}
    for bad, message in ((["no_such=1"], "unknown settings: no_such"), (["epochs=0"], "at least 1"),
                         (["epochs"], "SETTING=VALUE")):
        with pytest.raises(ValueError, match=message):
            parse_settings(bad)


def test_the_throughput_bench_changes_one_setting_per_variant_and_counts_adversarial_work():
    from bench.throughput import training_flops_per_token, variant_configs
    from src.training.train_model import read_config_file

    settings = read_config_file(str(REPO_ROOT / "configs" / "recommended.yaml"))
    changed = variant_configs(settings, ["embedding_dim=100", "hidden_dim=64"])
    wider, narrower = changed["embedding_dim=100"], changed["hidden_dim=64"]
    assert (wider.embedding_dim, wider.hidden_dim, wider.n_layers, wider.adversarial_eps) == (100, 128, 1, 1.0)
    assert (narrower.embedding_dim, narrower.hidden_dim) == (50, 64)
    plain = variant_configs(settings, ["adversarial_eps=0"])["adversarial_eps=0"]
    # one bidirectional layer: 2 directions x 2 x 4H(E + H) forward, 3x with the backward, 2x adversarial
    assert training_flops_per_token(plain) == 3 * 2 * 2 * 4 * 128 * (50 + 128)
    assert training_flops_per_token(wider) == 2 * 3 * 2 * 2 * 4 * 128 * (100 + 128)
    with pytest.raises(ValueError, match="unknown settings: hiden_dim"):
        variant_configs(settings, ["hiden_dim=64"])


def test_the_throughput_bench_times_a_step_at_the_asked_thread_count_and_restores_torchs():
    import torch

    from bench.throughput import with_threads

    before, seen = torch.get_num_threads(), []

    def step(batch):
        seen.append(torch.get_num_threads())
        if batch == "fail":
            raise RuntimeError("a failing step")

    with_threads(step, 1)("ok")
    with pytest.raises(RuntimeError):
        with_threads(step, 1)("fail")
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_the_averaging_bench_takes_the_epochs_in_order_and_averages_their_floats(tmp_path):
    import torch

    from bench.average_checkpoints import average_weights, epoch_checkpoints

    for name in ("checkpoint_epoch_010.pt", "checkpoint_epoch_009.pt", "checkpoint_epoch_100.pt", "best_model.pt",
                 "checkpoint_epoch_011.pt.tmp"):
        (tmp_path / name).touch()
    assert [path.name for path in epoch_checkpoints(tmp_path)] == [
        "checkpoint_epoch_009.pt", "checkpoint_epoch_010.pt", "checkpoint_epoch_100.pt"]
    states = [{"w": torch.tensor([1.0, 2.0]), "count": torch.tensor(3)},
              {"w": torch.tensor([3.0, 6.0]), "count": torch.tensor(5)}]
    averaged = average_weights(states)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 4.0])) and int(averaged["count"]) == 5


def test_the_epoch_ensemble_bench_takes_the_best_kept_epochs_by_the_runs_metric(tmp_path):
    import json

    from bench.epoch_ensemble import best_epochs

    losses = {5: 0.30, 6: 0.21, 7: 0.20, 8: 0.25, 9: 0.22}
    entries = [{"file": f"checkpoint_epoch_{epoch:03d}.pt", "epoch": epoch, "val_loss": loss,
                "val_accuracy": 1 - loss if epoch != 8 else 0.99} for epoch, loss in losses.items()]
    (tmp_path / "checkpoint_registry.json").write_text(json.dumps({"entries": entries}))
    for epoch in (5, 6, 7, 8):  # epoch 9's file was pruned
        (tmp_path / f"checkpoint_epoch_{epoch:03d}.pt").touch()
    assert [entry["epoch"] for entry in best_epochs(tmp_path, "val_loss", 3)] == [7, 6, 8]
    assert [entry["epoch"] for entry in best_epochs(tmp_path, "val_accuracy", 2)] == [8, 7]
    with pytest.raises(SystemExit, match="keeps 4 epoch checkpoints"):
        best_epochs(tmp_path, "val_loss", 5)


def test_the_averaging_bench_scores_an_overconfident_candidate_after_temperature_scaling():
    """Scores three times too confident: the fitted temperature is about 3, the calibrated loss is the loss
    of the honest scores, and accuracy counts the labels the scores give."""
    import numpy as np

    from bench.average_checkpoints import scored

    rng = np.random.default_rng(0)
    honest = rng.normal(0.0, 2.0, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-honest))).astype(np.int64)
    result = scored(3 * honest, labels)
    assert result["temperature"] == pytest.approx(3.0, rel=0.1)
    assert result["calibrated_loss"] < result["loss"] - 0.1
    assert result["calibrated_loss"] == pytest.approx(scored(honest, labels)["calibrated_loss"], abs=0.002)
    assert result["accuracy"] == pytest.approx(np.mean((honest > 0) == labels))


def test_the_short_review_bench_scores_a_model_directory_and_its_checkpoint_alike(model_dir, monkeypatch, capsys):
    import json

    import numpy as np

    from bench import short_reviews
    from src.data import load_imdb_splits

    checkpoint = model_dir.parent / "run" / "best_model.pt"
    data_dir = model_dir.parent / "data"
    monkeypatch.setattr(sys, "argv", ["short_reviews.py", str(model_dir), str(checkpoint), "--data-dir", str(data_dir)])
    short_reviews.main()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["model"] for row in rows] == [str(model_dir), str(checkpoint)]
    test = load_imdb_splits(data_dir, splits=("test",))["test"]
    cut = [" ".join(text.split()[:30]) for text in test.texts]
    predictor = short_reviews.load_predictor(model_dir)
    predicted = [item["label"] for item in predictor.predict_batch(cut)]
    expected = float(np.mean([label == predictor.class_names[truth] for label, truth in zip(predicted, test.labels)]))
    assert rows[0]["lstm_alone"] == rows[1]["lstm_alone"] == round(expected, 4)
    assert rows[0]["blend"] is None and rows[0]["reviews"] == len(test.texts) == 80


def test_the_evaluation_length_bench_scores_what_the_model_reads_at_each_length(model_dir, capsys):
    import json

    import numpy as np

    from bench import eval_length
    from bench.short_reviews import load_predictor
    from src.data import load_imdb_splits

    data_dir = model_dir.parent / "data"
    eval_length.main([str(model_dir), "--data-dir", str(data_dir), "--lengths", "40", "3"])
    whole, cut, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    test = load_imdb_splits(data_dir, splits=("test",))["test"]
    predictor = load_predictor(model_dir)  # trained and evaluated on 40 tokens: the test reviews whole
    assert predictor.preprocessor.max_length == 40
    assert max(len(predictor.preprocessor.tokenize(text)) for text in test.texts) <= 40

    def accuracy(texts):
        return round(float(np.mean((predictor.lstm_log_odds(texts) >= 0) == (np.asarray(test.labels) == 1))), 5)

    # head_tail at 3 tokens keeps a review's last 3 (its first quarter is no token)
    last_three = [" ".join(predictor.preprocessor.tokenize(text)[-3:]) for text in test.texts]
    assert (whole["length"], whole["lstm_alone"], whole["blend"]) == (40, accuracy(test.texts), None)
    assert (cut["length"], cut["lstm_alone"], cut["mean_tokens_read"]) == (3, accuracy(last_three), 3.0)
    assert whole["lstm_alone"] != cut["lstm_alone"]
    assert summary["points_over_training_length"] == {"3": {"lstm_alone": round(100 * (cut["lstm_alone"]
                                                                                     - whole["lstm_alone"]), 3)}}


def test_the_prediction_bench_times_the_same_weights_at_each_reading_length(model_dir):
    """bench/predict.py --reading-lengths: copies of one model that differ only in how much of a review they read,
    so the mean tokens read grow with the length and short texts score the same."""
    import numpy as np

    from bench.predict import by_reading_length, reading_copies
    from src.inference import SentimentPredictor
    from tests.helpers import synthetic_reviews

    texts = synthetic_reviews(6, seed=3)["pos"]
    long_texts = [" ".join([text] * 12) for text in texts]  # well past 40 tokens
    copies = {length: SentimentPredictor.from_pretrained(path) for length, path in reading_copies(str(model_dir),
                                                                                                 [5, 40]).items()}
    assert [predictor.max_length for predictor in copies.values()] == [5, 40]
    short = [" ".join(text.split()[:4]) for text in texts]
    assert np.allclose(copies[5].probabilities(short), copies[40].probabilities(short), atol=1e-6)
    result = by_reading_length(str(model_dir), [5, 40], long_texts, short[:2], 4, rounds=2)
    assert result["5"]["mean_tokens_read"] == 5 and result["40"]["mean_tokens_read"] == 40
    assert set(result["vs_first_length"]) == {"40"} and "torch" in result["vs_first_length"]["40"]


def test_the_prediction_bench_quantizes_the_torch_int8_variant_and_keeps_its_scores_close(model_dir):
    """bench/predict.py's torch_int8: the same directory with PyTorch's dynamic int8 LSTM and linear layers,
    scoring close to float32 (int8 weights move each score a little, not the model's answer)."""
    import numpy as np

    from bench.predict import TORCH_INT8, load_variant, variants
    from tests.helpers import synthetic_reviews

    if TORCH_INT8 not in variants():
        pytest.skip("this torch has no torch.ao.quantization.quantize_dynamic")
    from torch.ao.nn.quantized import dynamic

    texts = synthetic_reviews(20, seed=5)["pos"] + synthetic_reviews(20, seed=5)["neg"]
    reference, quantized = load_variant(str(model_dir), "torch"), load_variant(str(model_dir), TORCH_INT8)
    assert all(isinstance(lstm, dynamic.LSTM) for directions in quantized.model.layers for lstm in directions)
    assert isinstance(quantized.model.fc, dynamic.Linear) and not isinstance(reference.model.fc, dynamic.Linear)
    expected, scored = reference.lstm_scores(texts), quantized.lstm_scores(texts)
    assert not np.array_equal(expected, scored)
    assert np.abs(expected - scored).max() < 0.1 * np.abs(expected).max()


def test_the_evaluation_length_bench_scores_a_blend_as_its_predictor_labels(model_dir):
    import numpy as np

    from bench import eval_length
    from bench.short_reviews import load_predictor
    from src.data import load_imdb_splits
    from src.models.ngram_model import Blend, NgramBlend, NgramModel
    from tests.helpers import synthetic_reviews

    reviews = synthetic_reviews(60, seed=3)
    ngrams = NgramModel.fit(reviews["neg"] + reviews["pos"], [0] * 60 + [1] * 60)
    predictor = load_predictor(model_dir)
    predictor.temperature = 2.0  # scales the scores, not the labels
    predictor.ngram_blend = NgramBlend(ngrams, Blend(lstm_weight=0.4, ngram_weight=0.9, bias=-0.3))
    test = load_imdb_splits(model_dir.parent / "data", splits=("test",))["test"]
    labels = np.asarray(test.labels)
    row = eval_length.accuracies_at(predictor, test.texts, labels, 5, ngrams.log_odds(test.texts))
    predictor.preprocessor.eval_max_length = 5
    expected = np.mean((predictor.probabilities(test.texts) >= 0.5) == (labels == 1))
    assert row["blend"] == round(float(expected), 5) and row["blend"] != row["lstm_alone"]


def test_the_n_gram_settings_bench_fits_what_training_fits_at_the_default_strength(model_dir):
    """bench/ngram_settings.py fits every strength from one shared matrix: at the default C its n-gram model
    must score the run's test reviews as ``NgramModel.fit`` on the same training reviews does, and another C
    must give other scores."""
    import numpy as np

    from bench.ngram_refit import accuracy, run_split_and_lstm_scores
    from bench.ngram_settings import sweep
    from src.models.ngram_model import NgramConfig, NgramModel

    data_dir = str(model_dir.parent / "data")
    rows = sweep(data_dir, str(model_dir), [NgramConfig().inverse_l2, 1e-4])
    train, _, test, lstm, _, _ = run_split_and_lstm_scores(data_dir, str(model_dir))
    fitted = NgramModel.fit(train.texts, train.labels, tokenizer=lstm.preprocessor.tokenizer)
    assert rows[0]["ngrams_test"] == accuracy(fitted.log_odds(test.texts), test.labels)
    assert [row["inverse_l2"] for row in rows] == [NgramConfig().inverse_l2, 1e-4]
    assert rows[0]["blend_validation_log_loss"] != rows[1]["blend_validation_log_loss"]
    assert all(np.isfinite(row["blend_test"]) for row in rows)


def test_the_optimizer_bench_gives_each_adam_the_same_start_and_measures_how_far_they_drift():
    """bench/optimizer_step.py compares Adam's implementations on copies of one model's parameters with the
    same gradients: the copies must start equal and apart from the model's own tensors, every implementation
    must update them, and the loop's distance from itself is not reported."""
    import torch

    from bench.optimizer_step import IMPLEMENTATIONS, adam_setups, distance_from, step_milliseconds
    from src.config import TrainConfig
    from src.models.lstm_model import LSTMClassifier

    model = LSTMClassifier(50, embedding_dim=8, hidden_dim=4, n_layers=1)
    before = [p.detach().clone() for p in model.parameters()]
    setups = adam_setups(model, TrainConfig())
    assert set(setups) == set(IMPLEMENTATIONS)
    for params, _ in setups.values():
        assert all(torch.equal(p, q) and p.data_ptr() != q.data_ptr() for p, q in zip(params, model.parameters()))
    assert distance_from(setups) == {"foreach": 0.0, "fused": 0.0}
    times = step_milliseconds(setups, steps=2, warm_up=1)
    assert set(times) == set(IMPLEMENTATIONS) and all(ms > 0 for ms in times.values())
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    for params, _ in setups.values():
        assert all(not torch.equal(p, q) for p, q in zip(params, before))
    assert all(distance < 1e-6 for distance in distance_from(setups).values())


def test_the_pretraining_bench_times_every_variant_against_the_shipped_settings(imdb_tree, monkeypatch, capsys):
    """bench/lm_step.py pretrains the recommended model once per variant of the pretraining settings and
    reports each one's words per second next to the shipped settings'."""
    import json

    from bench import lm_step
    from src.training.lm_pretraining import PretrainConfig

    monkeypatch.setattr(sys, "argv", ["lm_step.py", "--data-dir", str(imdb_tree), "--reviews", "60", "--words", "3000",
                                      "--rounds", "1"])
    lm_step.main()
    row = json.loads(capsys.readouterr().out)
    assert set(row["words_per_s"]) == set(row["ratio_to_shipped"]) == set(lm_step.VARIANTS)
    assert row["ratio_to_shipped"]["shipped"] == 1.0 and all(r["median"] > 0 for r in row["words_per_s"].values())
    shipped = PretrainConfig()
    assert row["shipped"] == {"window": shipped.window, "batch_size": shipped.batch_size,
                              "negatives": shipped.negatives}
    assert row["model"]["embedding_dim"] == 50 and row["config"] == "recommended.yaml"

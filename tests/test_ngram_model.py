"""The n-gram model, its blend with the LSTM, and ``--ngram-blend`` end to end."""

import json

import numpy as np
import pytest

from src.data.loaders import split_reviews
from src.data.preprocessing import TextPreprocessor, tokenize
from src.exceptions import CheckpointError, DataError
from src.inference import SentimentPredictor
from src.inference.metrics import logistic
from src.models.model_dir import save_model_directory
from src.models.ngram_model import NGRAM_FILE, Blend, NgramBlend, NgramConfig, NgramModel
from src.config import TrainConfig
from src.training.pipeline import run_training
from tests.helpers import tiny_model

FILLER = ["the", "film", "was", "plot", "acting", "and", "it"]
# Each word is as common in positive as in negative reviews; only the pairs tell them apart.
PAIRS = {1: ["very good", "not bad"], 0: ["not good", "very bad"]}


def pair_reviews(count: int, seed: int):
    """Reviews whose label only a word pair gives away: (texts, labels)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(count):
        label = index % 2
        words = rng.choice(FILLER, size=int(rng.integers(3, 12))).tolist()
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(PAIRS[label])))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def accuracy(log_odds, labels) -> float:
    return float(np.mean((np.asarray(log_odds) >= 0) == np.asarray(labels)))


def test_word_pairs_decide_where_single_words_cannot():
    train_texts, train_labels = pair_reviews(400, seed=0)
    test_texts, test_labels = pair_reviews(200, seed=1)
    words_only = NgramModel.fit(train_texts, train_labels, NgramConfig(max_n=1))
    with_pairs = NgramModel.fit(train_texts, train_labels)
    assert accuracy(words_only.log_odds(test_texts), test_labels) < 0.7
    assert accuracy(with_pairs.log_odds(test_texts), test_labels) == 1.0
    assert "not bad" in with_pairs.ngrams and "very good" in with_pairs.ngrams


def test_blend_weights_follow_the_informative_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=2000)
    informative = 3.0 * (2 * labels - 1) + rng.normal(0, 2.0, size=2000)
    noise = rng.normal(0, 3.0, size=2000)
    trust_lstm = Blend.fit(informative, noise, labels)
    assert trust_lstm.lstm_weight > 0.5 and abs(trust_lstm.ngram_weight) < 0.1
    trust_ngrams = Blend.fit(noise, informative, labels)
    assert trust_ngrams.ngram_weight > 0.5 and abs(trust_ngrams.lstm_weight) < 0.1
    assert trust_lstm.apply(np.array([2.0]), np.array([-1.0]))[0] == pytest.approx(
        2.0 * trust_lstm.lstm_weight - trust_lstm.ngram_weight + trust_lstm.bias)


def fitted_blend() -> NgramBlend:
    texts, labels = pair_reviews(200, seed=0)
    return NgramBlend(NgramModel.fit(texts, labels), Blend(lstm_weight=0.4, ngram_weight=0.7, bias=-0.1))


def test_saved_blend_loads_identical_and_damage_is_refused(tmp_path):
    blend = fitted_blend()
    assert NgramBlend.load(tmp_path) is None
    blend.save(tmp_path)
    loaded = NgramBlend.load(tmp_path)
    texts, _ = pair_reviews(50, seed=3)
    assert loaded.model.ngrams == blend.model.ngrams and loaded.blend == blend.blend
    assert np.array_equal(loaded.combine(np.ones(50), texts), blend.combine(np.ones(50), texts))
    data = bytearray((tmp_path / NGRAM_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / NGRAM_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        NgramBlend.load(tmp_path)


def test_scores_equal_the_sparse_definition_on_real_reviews(csv_reviews):
    """Packed keys give what a bag-of-n-grams matrix times the weights gives, also for odd texts."""
    from src.data import load_imdb
    from src.models.ngram_model import _vectorizer

    train, test = load_imdb(csv_reviews, "train"), load_imdb(csv_reviews, "test")
    model = NgramModel.fit(train.texts, train.labels)
    texts = test.texts + ["", "!!! ???", "unseenword another unseenword", "good good good"]
    matrix = _vectorizer(model.max_n, model.tokenizer, vocabulary=model.ngrams).transform(texts)
    expected = matrix @ model.weights.astype(np.float64) + model.bias
    assert model.log_odds(texts) == pytest.approx(expected, abs=1e-9)
    tokenized = [tokenize(text, tokenizer=model.tokenizer) for text in texts]  # as the predictor passes them
    assert model.log_odds(texts, tokenized) == pytest.approx(expected, abs=1e-9)
    assert model.log_odds([]).shape == (0,)


@pytest.mark.parametrize("count", [0, 1, 2, 2000])
def test_places_find_every_key_and_nothing_else(count):
    """The lookup finds each key where it is sorted, at the array's ends too, and answers -1 for keys
    between, below and above the model's."""
    rng = np.random.default_rng(count)
    keys = np.unique(rng.integers(1, 1 << 62, size=count))
    model = NgramModel(["w"], keys[rng.permutation(len(keys))], np.zeros(len(keys)), 0.0, 3)
    queries = np.concatenate([keys, keys - 1, keys + 1, [0, 1 << 62, (1 << 63) - 1]]).astype(np.int64)
    rng.shuffle(queries)
    index = {key: place for place, key in enumerate(model.keys.tolist())}
    expected = [index.get(key, -1) for key in queries.tolist()]
    assert model.places(queries).tolist() == expected
    assert sorted(model.places(keys).tolist()) == list(range(len(keys)))


@pytest.mark.parametrize("ngram_tokenizer", ["social", "words"])
def test_blended_predictor_scores_each_part_by_its_own_tokens(tmp_path, ngram_tokenizer):
    """The predictor tokenises a review once for both parts only where they read the same tokens; a model
    whose n-gram part has another tokenizer still scores by that part's own tokens."""
    texts, labels = pair_reviews(300, seed=5)
    texts = [text.replace("very", "VERY :-)") for text in texts]  # the two tokenizers disagree on these
    preprocessor = TextPreprocessor(tokenizer="social").build_vocab(texts)
    blend = NgramBlend(NgramModel.fit(texts, labels, tokenizer=ngram_tokenizer), Blend(0.4, 0.7, -0.1))
    save_model_directory(tmp_path, tiny_model(vocab_size=preprocessor.vocab_size), preprocessor, ngram_blend=blend)
    predictor = SentimentPredictor.from_pretrained(tmp_path)
    expected = blend.blend.apply(predictor.lstm_scores(texts), blend.model.log_odds(texts))
    assert predictor.scores(texts) == pytest.approx(expected, abs=1e-6)
    assert any(tokenize(text, tokenizer="social") != tokenize(text, tokenizer="words") for text in texts)


def test_files_of_the_first_layout_still_load(tmp_path):
    """Before packed keys, ngram_model.pt held the n-grams as text."""
    import torch

    from src.utils.checkpoint_io import save_state

    blend = fitted_blend()
    ngram_bytes = bytearray("\n".join(blend.model.ngrams).encode("utf-8"))
    save_state(tmp_path / NGRAM_FILE, {"ngrams_utf8": torch.frombuffer(ngram_bytes, dtype=torch.uint8),
                                       "weights": torch.from_numpy(blend.model.weights), "bias": blend.model.bias,
                                       "max_n": blend.model.max_n, "blend": {"lstm_weight": 0.4,
                                                                             "ngram_weight": 0.7, "bias": -0.1}})
    texts, _ = pair_reviews(50, seed=3)
    assert np.array_equal(NgramBlend.load(tmp_path).model.log_odds(texts), blend.model.log_odds(texts))


def test_too_little_text_is_a_clear_error():
    with pytest.raises(DataError, match="too little text"):
        NgramModel.fit(["one two", "three four"], [0, 1])


def test_model_directory_never_keeps_another_runs_ngram_model(tmp_path):
    preprocessor = TextPreprocessor().build_vocab(FILLER + ["very", "good", "not", "bad"])
    model = tiny_model(vocab_size=preprocessor.vocab_size)
    save_model_directory(tmp_path, model, preprocessor, ngram_blend=fitted_blend())
    assert SentimentPredictor.from_pretrained(tmp_path).ngram_blend is not None
    save_model_directory(tmp_path, model, preprocessor)
    assert not (tmp_path / NGRAM_FILE).exists()
    assert SentimentPredictor.from_pretrained(tmp_path).ngram_blend is None


@pytest.mark.native_precision  # where the CPU has bfloat16: the saved test metrics are those predict gives
def test_training_with_ngram_blend_saves_and_reports_the_blend(imdb_tree, tmp_path):
    cfg = TrainConfig(data_dir=str(imdb_tree), output_dir=str(tmp_path / "model"),
                      checkpoint_dir=str(tmp_path / "run"), epochs=1, embedding_dim=16, hidden_dim=16, n_layers=1,
                      max_length=120, max_train_samples=1200, max_test_samples=400, pretrain_lm_epochs=0,
                      ngram_blend=True, quiet=True, tensorboard=False)
    metrics = run_training(cfg)
    saved = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert {"test_lstm_only", "ngram_blend"} <= set(saved)
    train, val, test = split_reviews(imdb_tree, cfg.validation_split, cfg.seed, cfg.max_train_samples,
                                     cfg.max_test_samples)
    predictor = SentimentPredictor.from_pretrained(tmp_path / "model")
    refitted = NgramModel.fit(train.texts + val.texts, np.concatenate([train.labels, val.labels]))
    assert np.array_equal(predictor.ngram_blend.model.keys, refitted.keys)  # the validation reviews' n-grams too
    assert predictor.ngram_blend.model.log_odds(test.texts) == pytest.approx(refitted.log_odds(test.texts), abs=1e-5)
    probabilities = predictor.probabilities(test.texts)
    calibration = json.loads((tmp_path / "model" / "calibration.json").read_text())
    assert predictor.temperature == calibration["temperature"] == metrics["calibration"]["temperature"]
    blended = predictor.ngram_blend.combine(predictor.lstm_log_odds(test.texts), test.texts)
    assert np.allclose(probabilities, logistic(blended / predictor.temperature))
    assert float(np.mean((probabilities >= 0.5) == np.asarray(test.labels))) == metrics["test"]["accuracy"]
    lstm_alone = predictor.lstm_log_odds(test.texts) >= 0
    assert float(np.mean(lstm_alone == np.asarray(test.labels))) == metrics["test_lstm_only"]["accuracy"]
    blend = metrics["ngram_blend"]
    assert blend["ngrams"] == len(predictor.ngram_blend.model.ngrams) > 1000
    assert blend["ngram_weight"] > 0  # on real reviews the n-grams carry signal
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert f"NBSVM on word 1-3-grams, {blend['ngrams']:,} n-grams" in card
    assert f"| LSTM alone (no temperature) | {100 * metrics['test_lstm_only']['accuracy']:.2f}% |" in card


def test_the_prediction_bench_compares_the_n_gram_part_with_its_sparse_reference(tmp_path):
    """bench/predict.py's comparison of the n-gram part with scikit-learn's vectoriser runs on a saved blend
    and finds the same log-odds."""
    from bench.predict import ngram_against_sparse_reference

    fitted_blend().save(tmp_path)
    texts = pair_reviews(40, seed=5)[0] + ["Not GOOD!!! very bad...", "very good :) not bad, <br />"]
    result = ngram_against_sparse_reference(str(tmp_path), texts)
    assert result["max_abs_difference"] < 1e-9 and result["packed_reviews_per_s"] > 0


def test_lstm_only_leaves_out_the_n_gram_part_and_the_blends_temperature(tmp_path, capsys):
    """``--lstm-only`` (predict, evaluate, ``from_pretrained``) scores a blended model by its LSTM alone at
    temperature 1, the way training reports "LSTM alone"; a model without a blend keeps its own temperature."""
    from src.inference.evaluate import main as evaluate_main
    from src.inference.predict import main as predict_main

    texts, labels = pair_reviews(300, seed=5)
    preprocessor = TextPreprocessor().build_vocab(texts)
    model = tiny_model(vocab_size=preprocessor.vocab_size)
    save_model_directory(tmp_path / "blend", model, preprocessor, calibration={"temperature": 2.0},
                         ngram_blend=NgramBlend(NgramModel.fit(texts, labels), Blend(0.4, 0.7, -0.1)))
    save_model_directory(tmp_path / "plain", model, preprocessor, calibration={"temperature": 2.0})
    blended = SentimentPredictor.from_pretrained(tmp_path / "blend")
    alone = SentimentPredictor.from_pretrained(tmp_path / "blend", lstm_only=True)
    assert (blended.temperature, alone.temperature, alone.ngram_blend) == (2.0, 1.0, None)
    assert alone.probabilities(texts) == pytest.approx(logistic(blended.lstm_log_odds(texts)), abs=1e-6)
    assert SentimentPredictor.from_pretrained(tmp_path / "plain", lstm_only=True).temperature == 2.0

    assert predict_main(["--model-dir", str(tmp_path / "blend"), "--lstm-only", *texts[:5]]) == 0
    printed = [json.loads(line)["probability"] for line in capsys.readouterr().out.splitlines()]
    assert printed == pytest.approx(logistic(blended.lstm_log_odds(texts[:5])), abs=1e-6)
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps({"text": text, "label": label}) + "\n"
                                                    for text, label in zip(texts, labels)))
    accuracies = {}
    for flags in ([], ["--lstm-only"]):
        assert evaluate_main(["--model-dir", str(tmp_path / "blend"), "--file", str(tmp_path / "reviews.jsonl"),
                              "--output-dir", str(tmp_path / "eval"), *flags]) == 0
        evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
        assert evaluation["lstm_only"] == bool(flags)
        accuracies[bool(flags)] = evaluation["accuracy"]
    lstm_alone = float(np.mean((blended.lstm_log_odds(texts) > 0) == np.asarray(labels)))
    assert accuracies[True] == pytest.approx(lstm_alone) and accuracies[False] > lstm_alone + 0.2

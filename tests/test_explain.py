"""Per-word explanations (src/inference/explain.py): they add up, point at the right words of the text, weigh a
blend's parts as the blend does, and mean something (deleting the top words of real reviews moves the prediction)."""

import json

import numpy as np
import pytest
import torch

from src.config import TrainConfig
from src.data import load_imdb
from src.data.preprocessing import TextPreprocessor
from src.inference import EnsemblePredictor, SentimentPredictor
from src.inference.explain import deleted_text, deletion_drops, ngram_word_parts, token_spans
from src.inference.predict import main as predict_main
from src.models.model_dir import load_model_directory
from src.models.ngram_model import Blend, NgramBlend, NgramModel
from src.training.pipeline import run_training
from tests.helpers import synthetic_reviews, tiny_model, tiny_trained_model

MIXED = "This film was GREAT!<br /><br />Superb acting, but the plot... boring :( I LOVED it 😀 #mustsee"
LONG = " ".join(["great"] * 5 + ["the film was boring and awful"] * 12 + ["superb loved it"])  # 80 tokens


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    return tiny_trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def lstm_only(trained_dir):
    model, preprocessor = load_model_directory(trained_dir)
    return SentimentPredictor(model, preprocessor, device="cpu")


@pytest.fixture(scope="module")
def blended(lstm_only):
    """The same LSTM blended with an n-gram model fitted on the same kind of reviews, temperature 1.5."""
    reviews = synthetic_reviews(150)
    texts, labels = reviews["neg"] + reviews["pos"], [0] * 150 + [1] * 150
    ngrams = NgramModel.fit(texts, labels, tokenizer=lstm_only.preprocessor.tokenizer)
    return SentimentPredictor(lstm_only.model, lstm_only.preprocessor, device="cpu", temperature=1.5,
                              ngram_blend=NgramBlend(ngrams, Blend(lstm_weight=0.7, ngram_weight=1.3, bias=0.2)))


def contributions(result, part="contribution"):
    return np.array([word[part] for word in result["explanation"]["words"]])


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_explain_returns_predict_and_one_entry_per_token(lstm_only, method):
    for text in (MIXED, "", "ok"):
        result = lstm_only.explain(text, method=method)
        assert {key: value for key, value in result.items() if key != "explanation"} == lstm_only.predict(text)
        explanation = result["explanation"]
        assert (explanation["target"], explanation["against"]) == ("positive", "negative")
        assert explanation["unit"] == "log-odds" and explanation["method"] == method
        assert [word["word"] for word in explanation["words"]] == lstm_only.preprocessor.tokenize(text)
        assert explanation["log_odds"] == pytest.approx(float(lstm_only.scores([text])[0]), abs=1e-5)


def test_integrated_gradients_add_up_to_the_log_odds_less_the_baselines(lstm_only):
    """With enough steps: on MIXED this model's score jumps by 1.3 within 1/200 of the path, which 32 or 256
    quadrature points miss by 0.5 and 1,024 resolve."""
    for text in (MIXED, "superb superb loved the plot", "awful"):
        result = lstm_only.explain(text, steps=1024)
        explanation = result["explanation"]
        assert contributions(result).sum() == pytest.approx(explanation["log_odds"] - explanation["baseline"],
                                                            abs=0.02)
    # the baseline is the review of all-zero word vectors
    ids = lstm_only.encode([MIXED])[0]
    with torch.no_grad():
        vectors = lstm_only.model.embedding(torch.as_tensor(ids[None], dtype=torch.long))
        zero = lstm_only.model(torch.as_tensor(ids[None], dtype=torch.long), embedding_shift=-vectors)
    assert lstm_only.explain(MIXED)["explanation"]["baseline"] == pytest.approx(float(zero[0]), abs=1e-5)


def test_contributions_point_at_the_words_that_decide(lstm_only):
    for method in ("integrated_gradients", "occlusion"):
        words = lstm_only.explain("the film was superb and the plot was awful", method=method)["explanation"]["words"]
        by_word = {word["word"]: word["contribution"] for word in words}
        assert by_word["superb"] > 0 > by_word["awful"]
        fillers = max(abs(by_word[word]) for word in ("the", "film", "plot"))
        assert min(abs(by_word["superb"]), abs(by_word["awful"])) > fillers


def test_offsets_point_at_the_words_of_the_original_text(lstm_only):
    text = "İstanbul? " + MIXED + " Don't—ever—MISS it!! can\u2019t"  # 'İ' lowercases to two characters
    words = lstm_only.explain(text)["explanation"]["words"]
    assert [(w["word"], text[w["start"]:w["end"]]) for w in words[:2]] == [("i\u0307stanbul", "İstanbul"), ("?", "?")]
    assert (words[-1]["word"], text[words[-1]["start"]:words[-1]["end"]]) == ("can't", "can\u2019t")
    assert all(text[w["start"]:w["end"]].lower() == w["word"] for w in words[:-1])
    spans = [(w["start"], w["end"]) for w in words]
    assert spans == sorted(spans) and all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    found = {text[w["start"]:w["end"]] for w in words}
    assert {"GREAT", "br", ":(", "LOVED", "😀", "#mustsee", "Don't", "MISS"} <= found
    assert token_spans("a b", ["x", "b", "a"]) == [(None, None), (2, 3), (None, None)]  # not found after the last
    assert token_spans("it\u2019s", ["it's"], "unicode") == [(0, 4)]
    assert token_spans("it\u2019s", ["it's"]) == [(None, None)]  # "words" reads the apostrophe as it is
    assert token_spans("ΚΑΚΟΣ film", ["κακος", "film"], "social") == [(0, 5), (6, 10)]  # a final sigma, in context
    assert token_spans("cafe\u0301 Vie\u0323\u0302t", ["café", "việt"], "unicode") == [(0, 5), (6, 12)]  # NFC


def test_temperature_divides_every_number(lstm_only):
    hot = SentimentPredictor(lstm_only.model, lstm_only.preprocessor, device="cpu", temperature=2.0)
    cold, warm = lstm_only.explain(MIXED), hot.explain(MIXED)
    assert contributions(warm) == pytest.approx(contributions(cold) / 2, abs=1e-6)
    for key in ("log_odds", "baseline"):
        assert warm["explanation"][key] == pytest.approx(cold["explanation"][key] / 2)
    assert warm["probability"] == pytest.approx(hot.predict(MIXED)["probability"])
    assert warm["probability"] != pytest.approx(cold["probability"])


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_a_blends_parts_add_up_and_carry_its_weights(lstm_only, blended, method):
    result, alone = blended.explain(MIXED, method=method), lstm_only.explain(MIXED, method=method)
    assert {key: value for key, value in result.items() if key != "explanation"} == blended.predict(MIXED)
    lstm, ngram = contributions(result, "lstm"), contributions(result, "ngram")
    assert lstm + ngram == pytest.approx(contributions(result))
    assert lstm == pytest.approx(0.7 * contributions(alone) / 1.5, abs=1e-6)
    ngram_model = blended.ngram_blend.model
    assert ngram.sum() == pytest.approx(1.3 * (ngram_model.log_odds([MIXED])[0] - ngram_model.bias) / 1.5)
    explanation = result["explanation"]
    assert explanation["log_odds"] == pytest.approx(float(blended.scores([MIXED])[0]) / 1.5, abs=1e-5)
    if method == "integrated_gradients":
        assert explanation["baseline"] == pytest.approx(
            (0.7 * alone["explanation"]["baseline"] + 1.3 * ngram_model.bias + 0.2) / 1.5, abs=1e-5)


def test_an_ngrams_weight_is_split_evenly_over_the_words_of_its_occurrences():
    model = NgramModel.from_ngrams(["great", "not good", "good", "not good film"], np.array([1.0, -2.0, 0.5, 3.0]),
                                   0.1, max_n=3, tokenizer="social")
    tokens = "not good not good great unknown".split()
    # 'not good' (counted once, as the model counts it) over 4 word slots; 'good' twice; 'great' once
    expected = [-0.5, -0.5 + 0.25, -0.5, -0.5 + 0.25, 1.0, 0.0]
    assert ngram_word_parts(model, tokens) == pytest.approx(expected)
    assert sum(expected) == pytest.approx(model.log_odds([" ".join(tokens)])[0] - 0.1)
    assert ngram_word_parts(model, ["not", "good", "film"]) == pytest.approx([-1 + 1, -1 + 0.5 + 1, 1])


def test_words_cut_by_truncation_get_no_lstm_part(lstm_only, blended):
    assert lstm_only.max_length == 40 and lstm_only.preprocessor.truncation == "head_tail"
    for predictor in (lstm_only, blended):
        for method in ("integrated_gradients", "occlusion"):
            words = predictor.explain(LONG, method=method)["explanation"]["words"]
            assert len(words) == 80
            cut = [word["truncated"] for word in words]
            assert cut == [False] * 10 + [True] * 40 + [False] * 30  # head_tail: 10 from the start, 30 from the end
            assert all(word.get("lstm", word["contribution"]) == 0 for word in words[10:50])
    words = blended.explain(LONG)["explanation"]["words"]
    assert any(word["ngram"] != 0 for word in words[10:50])  # the n-gram model reads the whole review


def test_more_classes_explain_the_predicted_one_against_the_runner_up():
    processor = TextPreprocessor(tokenizer="social").build_vocab(["red green blue good bad"])
    torch.manual_seed(0)  # the sums' float32 error depends on the weights
    model = tiny_model(vocab_size=processor.vocab_size, output_dim=3, class_names=("red", "green", "blue"))
    texts = ["red red good", "green bad blue", "blue"]
    ngrams = NgramModel.fit(texts * 4, [0, 1, 2] * 4, tokenizer="social", classes=3)
    for blend in (None, NgramBlend(ngrams, Blend(0.8, 1.1, [0.1, -0.2, 0.3]))):
        predictor = SentimentPredictor(model, processor, device="cpu", ngram_blend=blend)
        for text in texts:
            result = predictor.explain(text, steps=128)
            ranked = sorted(result["probabilities"], key=result["probabilities"].get, reverse=True)
            explanation = result["explanation"]
            assert (explanation["target"], explanation["against"]) == (result["label"], ranked[1]) == tuple(ranked[:2])
            probabilities = result["probabilities"]
            # the explanation's own model run: float32 sums in another order than the prediction's batch
            assert explanation["log_odds"] == pytest.approx(np.log(probabilities[ranked[0]] / probabilities[ranked[1]]),
                                                            abs=1e-5)
            assert contributions(result).sum() == pytest.approx(explanation["log_odds"] - explanation["baseline"],
                                                                abs=0.01)


def test_two_outputs_of_two_classes_explain_their_difference():
    processor = TextPreprocessor(tokenizer="social").build_vocab(["good bad film"])
    torch.manual_seed(0)
    model = tiny_model(vocab_size=processor.vocab_size, output_dim=2, class_names=("bad", "good"))
    predictor = SentimentPredictor(model, processor, device="cpu")
    result = predictor.explain("good film, bad film", steps=256)
    explanation = result["explanation"]
    assert (explanation["target"], explanation["against"]) == ("good", "bad")
    assert explanation["log_odds"] == pytest.approx(np.log(result["probability"] / (1 - result["probability"])))
    assert contributions(result).sum() == pytest.approx(explanation["log_odds"] - explanation["baseline"], abs=0.01)


def test_predict_explain_on_the_command_line(trained_dir, lstm_only, tmp_path, capsys):
    model_dir = str(trained_dir)
    assert predict_main(["--model-dir", model_dir, "--explain", MIXED, "awful"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == [MIXED, "awful"]
    direct = SentimentPredictor.from_pretrained(trained_dir).explain(MIXED)
    assert [word["word"] for word in lines[0]["explanation"]["words"]] == lstm_only.preprocessor.tokenize(MIXED)
    assert contributions(lines[0]) == pytest.approx(contributions(direct))
    assert predict_main(["--model-dir", model_dir, MIXED]) == 0
    assert "explanation" not in json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit) as stop:
        predict_main(["--model-dir", model_dir, "--explain", "--format", "csv", MIXED])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--explain" in err and "jsonl" in err and err.count("\n") == 1
    assert predict_main(["--model-dir", model_dir, "--model-dir", model_dir, "--explain", MIXED]) == 1
    err = capsys.readouterr().err
    assert "one model directory" in err and err.count("\n") == 1


def test_an_ensemble_and_bad_input_are_refused_with_what_to_do(lstm_only):
    with pytest.raises(ValueError, match="one model directory at a time"):
        EnsemblePredictor([lstm_only, lstm_only]).explain(MIXED)
    with pytest.raises(TypeError, match="review 1 is a int, not text"):
        lstm_only.explain_batch(["fine", 3])
    for method in (lstm_only.explain_batch, lstm_only.predict_batch, lstm_only.class_probabilities):
        with pytest.raises(TypeError, match="a list of texts"):  # predict_batch classified each character
            method("one text")
    with pytest.raises(ValueError, match="method must be one of integrated_gradients, occlusion"):
        lstm_only.explain(MIXED, method="shap")
    for steps in (0, 2.5, True, 10**6):
        with pytest.raises(ValueError, match="steps must be an integer from 1 to 4096"):
            lstm_only.explain(MIXED, steps=steps)


def test_deleting_a_word_deletes_exactly_its_token(lstm_only):
    tokens = lstm_only.preprocessor.tokenize(MIXED)
    for positions in ((), (0,), (1, 4, len(tokens) - 1)):
        kept = [token for index, token in enumerate(tokens) if index not in positions]
        assert lstm_only.preprocessor.tokenize(deleted_text(tokens, positions)) == kept
    unchanged = lstm_only.predict(deleted_text(tokens, ()))["probability"]
    assert unchanged == pytest.approx(lstm_only.predict(MIXED)["probability"])


@pytest.fixture(scope="module")
def real_model(imdb_tree, tmp_path_factory):
    """A small blended model trained for three epochs on 2,000 real training reviews (1,600 after validation; the
    LSTM alone scores about 72% on the test reviews, the blend 84%)."""
    root = tmp_path_factory.mktemp("explain-real")
    run_training(TrainConfig(data_dir=str(imdb_tree), output_dir=str(root / "model"), checkpoint_dir=str(root / "run"),
                             epochs=3, embedding_dim=32, hidden_dim=16, n_layers=1, max_length=200, batch_size=32,
                             learning_rate=0.01, pretrain_lm_epochs=0, ngram_blend=True, quiet=True,
                             tensorboard=False))
    return root / "model"


def test_deleting_the_top_words_of_real_reviews_moves_the_prediction_far_more_than_random_words(real_model, imdb_tree):
    """The issue's test: on 300 real test reviews, deleting the 5 words with the largest contributions toward the
    predicted label lowers its probability at least twice as much as deleting 5 random words (5 draws). Measured
    here: about 20 times as much for the LSTM alone, 40 times for the blend."""
    test = load_imdb(imdb_tree, "test")
    texts = [test.texts[i] for i in np.random.default_rng(0).choice(len(test.texts), 300, replace=False)]
    blended = SentimentPredictor.from_pretrained(real_model, runtime="torch")
    assert blended.ngram_blend is not None
    lstm_alone = SentimentPredictor(blended.model, blended.preprocessor, device="cpu")
    for predictor in (lstm_alone, blended):
        drops = deletion_drops(predictor, predictor.explain_batch(texts, steps=16), batch_size=64)
        assert drops["top"].mean() >= 2 * drops["random"].mean()
        assert drops["top"].mean() > 0.05 and np.mean(drops["top"] > drops["random"]) > 0.8

import json

import numpy as np
import pytest

from src.data import TextPreprocessor
from src.exceptions import DataError


def test_tokenize_keeps_words_contractions_and_sentiment_punctuation():
    tokens = TextPreprocessor().tokenize("I didn't LOVE it... Really?! 10/10, café")
    assert tokens == ["i", "didn't", "love", "it", "really", "?", "!", "10", "10", "café"]


@pytest.mark.parametrize("text, unicode_tokens, social_tokens", [
    ("这个电影很好，我很喜欢", list("这个电影很好我很喜欢"), ["这个电影很好", "我很喜欢"]),  # Chinese: a token a character
    ("これは良い映画です", list("これは良い映画です"), ["これは良い映画です"]),
    ("ภาษาไทยดีมาก", ["ภ", "า", "ษ", "า", "ไ", "ท", "ย", "ดี", "ม", "า", "ก"], ["ภาษาไทยด", "มาก"]),  # ดี keeps its mark
    ("हिन्दी बहुत अच्छा है", ["हिन्दी", "बहुत", "अच्छा", "है"], ["ह", "न", "द", "बह", "त", "अच", "छ", "ह"]),
    ("nai\u0308ve", ["naïve"], ["nai", "ve"]),  # NFC composes the accent
    ("#हिन्दी ｶﾞﾝﾀﾞﾑ", ["#हिन्दी", "ｶ", "ﾞ", "ﾝ", "ﾀ", "ﾞ", "ﾑ"], ["#ह", "न", "द", "ｶﾞﾝﾀﾞﾑ"]),  # tags keep marks; half-width kana
    ("don\u2019t :) #fun 😀", ["don't", ":)", "#fun", "😀"], ["don", "t", ":)", "#fun", "😀"]),
    ("I didn't like it... 10/10!", ["i", "didn't", "like", "it", "10", "10", "!"],
     ["i", "didn't", "like", "it", "10", "10", "!"]),  # plain English: the same tokens
])
def test_the_unicode_tokenizer_reads_any_script(text, unicode_tokens, social_tokens):
    """The default reads scripts without spaces a character at a time and keeps words' combining marks;
    "social", which models trained before it record, reads as it did."""
    assert TextPreprocessor().tokenizer == "unicode"
    assert TextPreprocessor().tokenize(text) == unicode_tokens
    assert TextPreprocessor(tokenizer="social").tokenize(text) == social_tokens


def test_vocabulary_is_ranked_by_frequency_then_alphabetically():
    processor = TextPreprocessor(max_vocab_size=5).build_vocab(["b a c", "a b", "a d"])
    assert processor.itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert processor.stoi["<pad>"] == 0 and processor.stoi["<unk>"] == 1


def test_min_freq_drops_rare_words():
    processor = TextPreprocessor(min_freq=2).build_vocab(["good good film", "bad film"])
    assert processor.itos == ["<pad>", "<unk>", "film", "good"]
    with pytest.raises(DataError, match="no word of the training texts appears 3 times"):  # all <unk>: useless
        TextPreprocessor(min_freq=3).build_vocab(["good good film", "bad film"])


def test_encode_decode_and_unknown_words():
    processor = TextPreprocessor().build_vocab(["a great film", "a bad film"])
    ids = processor.encode("A great, unseen film")
    assert ids == [processor.stoi["a"], processor.stoi["great"], 1, processor.stoi["film"]]
    assert processor.decode(ids + [0, 0]) == "a great <unk> film"
    batch = processor.encode_batch(["a great film", ""])
    assert batch[0].dtype == np.int32 and batch[0].tolist() == processor.encode("a great film")
    assert batch[1].tolist() == []


@pytest.mark.parametrize("truncation, trained, read", [
    ("head", "w0 w1 w2 w3", "w0 w1 w2 w3 w4 w5 w6 w7"),
    ("head_tail", "w0 w9 w10 w11", "w0 w1 w6 w7 w8 w9 w10 w11"),  # the first quarter and the end
])
def test_the_preprocessor_cuts_reviews_for_training_and_reads_twice_as_much_at_prediction(truncation, trained, read):
    words = " ".join(f"w{i}" for i in range(12))
    processor = TextPreprocessor(max_length=4, truncation=truncation).build_vocab([words])
    [ids] = processor.encode_batch([words])
    assert processor.decode(processor.truncate(ids)) == trained
    assert processor.eval_max_length == 8
    assert processor.decode(processor.truncate_for_prediction(ids)) == read
    [for_model] = processor.encode_for_model([words])
    assert processor.decode(for_model) == read
    assert processor.encode_for_model([""])[0].tolist() == [processor.unk_idx]  # never empty
    exact = TextPreprocessor(max_length=4, eval_max_length=4, truncation=truncation).build_vocab([words])
    assert processor.decode(exact.encode_for_model([words])[0]) == trained


def test_save_and_load_round_trip(tmp_path):
    processor = TextPreprocessor(max_vocab_size=100, min_freq=1).build_vocab(["one two three", "two three"])
    path = tmp_path / "vocab.json"
    processor.save(path)
    loaded = TextPreprocessor.load(path)
    assert loaded.itos == processor.itos and loaded.max_vocab_size == 100
    assert (loaded.max_length, loaded.eval_max_length, loaded.truncation) == (400, 800, processor.truncation)
    assert loaded.encode("three two zero") == processor.encode("three two zero")
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary files left


def test_a_vocabulary_from_before_the_evaluation_length_reads_what_it_was_trained_on(tmp_path):
    state = TextPreprocessor(max_length=7, eval_max_length=30).build_vocab(["one two"]).to_dict()
    assert TextPreprocessor.from_dict(state).eval_max_length == 30
    del state["eval_max_length"]  # as vocabularies were written before it
    assert TextPreprocessor.from_dict(state).eval_max_length == 7


def test_save_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "vocab.json"
    TextPreprocessor().build_vocab(["old words"]).save(path)
    before = path.read_bytes()
    newer = TextPreprocessor().build_vocab(["new words"])
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        newer.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "damaged"),
    ('{"format_version": 1}', "incomplete"),
    ('{"format_version": 99, "itos": []}', "version 99"),
    ("[1, 2]", "does not hold a vocabulary"),
])
def test_damaged_vocabulary_files(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        TextPreprocessor.load(path)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TextPreprocessor.load(tmp_path / "none.json")


@pytest.mark.parametrize("kwargs", [{"max_vocab_size": 2}, {"min_freq": 0}, {"eval_max_length": 0},
                                    {"eval_max_length": 10 ** 9}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        TextPreprocessor(**kwargs)


def test_fit_encode_matches_build_vocab_then_encode():
    texts = ["a great film!", "an awful, awful film?", "great acting"]
    one_pass = TextPreprocessor()
    ids = one_pass.fit_encode(texts)
    two_pass = TextPreprocessor().build_vocab(texts)
    assert one_pass.itos == two_pass.itos
    assert [x.tolist() for x in ids] == [x.tolist() for x in two_pass.encode_batch(texts)]


def test_from_dict_without_data():
    with pytest.raises(DataError, match="no vocabulary data"):
        TextPreprocessor.from_dict(None)

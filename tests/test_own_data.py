"""Your own data: table formats, class names, the errors of bad files, and C-class training end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from src.config import TrainConfig
from src.data import loaders
from src.data.labels import class_names_of, label_indices
from src.data.loaders import DataSource, split_reviews
from src.data.preprocessing import TextPreprocessor, tokenize
from src.data.tables import read_table, read_texts
from src.exceptions import DataError
from src.inference import SentimentPredictor
from src.inference.evaluate import main as evaluate_main
from src.inference.predict import main as predict_main
from src.models.lstm_model import LSTMConfig
from src.models.model_dir import save_model_directory
from src.models.ngram_model import Blend, NgramBlend, NgramModel
from src.training import pipeline
from src.training.pipeline import _unlabeled_texts, run_training
from src.training.train_model import main as train_main
from src.training.trainer import _criterion
from tests.helpers import tiny_model, write_rating_tables, write_table

FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
TEXTS = ['Loved it, "really"', "Dull.\tTab inside", "ok film\nover two lines", "fine"]
LABELS = ["positive", "negative", "positive", "negative"]
TINY = dict(embedding_dim=16, hidden_dim=16, max_length=120, batch_size=32, pretrain_lm_epochs=0, quiet=True,
            tensorboard=False, learning_rate=0.005)


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    table = read_table(write_table(tmp_path / f"data{suffix}", TEXTS, LABELS, "review", "sentiment"),
                       "review", "sentiment")
    assert table.texts == TEXTS and table.labels == LABELS


def test_integer_labels_become_names_in_numeric_order(tmp_path):
    path = write_table(tmp_path / "stars.parquet", ["a", "b", "c", "d"], [10, 2, 1, 2])
    labels = read_table(path).labels
    assert labels == ["10", "2", "1", "2"]
    assert class_names_of(labels) == ("1", "2", "10")  # numeric, not alphabetical ("1", "10", "2")
    write_table(tmp_path / "floats.jsonl", ["a", "b"], [1.0, 0.0])
    assert read_table(tmp_path / "floats.jsonl").labels == ["1", "0"]
    write_table(tmp_path / "codes.csv", list("abcde"), ["007", "7", "01", "12345678901234567890", "+3.0"])
    # codes keep their zeros (they merged with 7 and 1), long numbers every digit (a float rounded them)
    assert read_table(tmp_path / "codes.csv").labels == ["007", "7", "01", "12345678901234567890", "3"]


def test_a_model_saved_before_codes_kept_their_zeros_reads_its_test_labels():
    """A model of labels 01-03 saved then has the classes 1-3: its test file's 01 still finds class 1."""
    assert label_indices(["01", "3", "02"], ("1", "2", "3"), "test.csv", ["line 2", "line 3", "line 4"]) == [0, 2, 1]
    with pytest.raises(DataError, match="the label '04' is not one of the training data's classes"):
        label_indices(["04"], ("1", "2", "3"), "test.csv", ["line 2"])


def test_labels_that_differ_only_in_case_are_named(caplog):
    with caplog.at_level("WARNING"):
        assert class_names_of(["pos", "Pos", "neg", "NEG", "meh"]) == ("NEG", "Pos", "meh", "neg", "pos")
    assert "differ only in case ('NEG' and 'neg'; 'Pos' and 'pos')" in caplog.text


def test_two_classes_put_the_positive_one_last():
    assert class_names_of(["pos", "neg", "pos"]) == ("neg", "pos")
    assert class_names_of(["1", "0"]) == ("0", "1")
    assert class_names_of(["spam", "ham"], positive_label="ham") == ("spam", "ham")
    with pytest.raises(DataError, match="two classes 'ham' and 'spam'; say which one is positive with "
                                        "--positive-label"):
        class_names_of(["spam", "ham"])
    with pytest.raises(DataError, match="--positive-label 'eggs' is not a label"):
        class_names_of(["spam", "ham"], positive_label="eggs")
    with pytest.raises(DataError, match="--positive-label is for two classes; .* has 3"):
        class_names_of(["a", "b", "c"], positive_label="a")


@pytest.mark.parametrize("content, message", [
    ("text,label\nfine,pos\n,neg\n", r"data.csv, line 3: the text \('text'\) is empty"),
    ("text,label\nfine,pos\nbad,\n", r"data.csv, line 3: the label \('label'\) is missing"),
    ("review,label\nfine,pos\n", r"data.csv has no 'text' column \(its columns: 'review', 'label'\); name the right "
                                 "one with --text-column"),
    ("text,stars\nfine,pos\n", r"has no 'label' column .*--label-column"),
    ("text,label\n\x00\x01,pos\n", r"data.csv is not a CSV text file \(it holds NUL bytes\)"),
    # DictReader dropped a third field: the text lost its end and the label became " but it was wonderful"
    ("label,text\n1,I expected to hate it, but it was wonderful\n", r"data.csv, line 2: 3 fields where the header "
                                                                    r"has 2; a text that holds a comma must be in "
                                                                    r"double quotes"),
    ("label,text\n1,fine\n0\n", r"data.csv, line 3: no value for text; give every row a value for each column"),
    # a quote never closed: the rest of the file was one text (named at the end, without quoting advice)
    ("text,label\n\"great film,pos\nawful film,neg\ngood,pos\n",
     r"data.csv, line 2: a quote opened there is never closed, so the rest of the file \(3 lines\) would be one"),
])
def test_bad_csv_rows_are_named(tmp_path, content, message):
    path = tmp_path / ("data.tsv" if "\t" in content else "data.csv")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_a_json_lines_file_whose_first_object_lacks_a_field_says_so(tmp_path):
    """The columns of JSON Lines are the first object's fields: the message named a column the file lacks."""
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad", "label": "neg"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="data.jsonl: the first object has no 'label' field \\(its fields: 'text'\\); "
                                        "give every line one"):
        read_table(path)


@pytest.mark.parametrize("label, kind", [('["pos", "neg"]', "a list"), ('{"name": "pos"}', "an object")])
def test_a_json_label_that_is_not_one_class_is_refused(tmp_path, label, kind):
    """A list of labels was taken for one class named "['pos', 'neg']"."""
    path = tmp_path / "data.jsonl"
    path.write_text(f'{{"text": "fine", "label": "pos"}}\n{{"text": "mixed", "label": {label}}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"data.jsonl, line 2: the label \\('label'\\) is {kind}, not one class"):
        read_table(path)


def test_a_text_with_its_own_tab_and_line_break_is_read_from_tsv(tmp_path):
    """pandas writes such a text in quotes; it was refused as a stray quote. Blank lines between rows are
    skipped, as csv readers skip them, not taken for a row of several lines."""
    texts = ["Subject:\tRefund\nBody: I want my money back", "Pros:\tgreat\nCons:\tslow", "fine"]
    path = tmp_path / "data.tsv"
    pd.DataFrame({"text": texts, "label": ["neg", "pos", "pos"]}).to_csv(path, sep="\t", index=False)
    assert read_table(path).texts == texts
    (tmp_path / "blank.csv").write_text('text,label\r\ngood film,pos\r\n\r\n\r\n"two\r\nlines",neg\r\nbad,neg',
                                        encoding="utf-8")
    assert read_table(tmp_path / "blank.csv").texts == ["good film", "two\r\nlines", "bad"]


def test_long_quoted_texts_and_commas_inside_quotes_are_read(tmp_path):
    """A text longer than the csv module's default field limit (131,072 characters) is a review, not an error."""
    long_text = "a long review " * 20_000  # 280,000 characters
    path = tmp_path / "data.csv"
    path.write_text(f'text,label\n"{long_text}",pos\n"fine, quoted",neg\n', encoding="utf-8")
    table = read_table(path)
    assert table.texts == [long_text, "fine, quoted"] and table.labels == ["pos", "neg"]


def test_files_that_are_not_what_their_extension_says(tmp_path):
    (tmp_path / "data.parquet").write_text("text,label\nfine,pos\n")
    with pytest.raises(DataError, match="data.parquet is not a readable Parquet file"):
        read_table(tmp_path / "data.parquet")
    (tmp_path / "data.jsonl").write_text('{"text": "fine", "label": "pos"}\ntext,label\n')
    with pytest.raises(DataError, match=r"data.jsonl, line 2 is not JSON"):
        read_table(tmp_path / "data.jsonl")
    (tmp_path / "array.jsonl").write_text('[{"text": "fine", "label": "pos"}]\n')
    with pytest.raises(DataError, match=r"array.jsonl, line 1 is a JSON list, not an object"):
        read_table(tmp_path / "array.jsonl")
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unknown kind of file; use .csv, .tsv, .jsonl or .parquet"):
        read_table(tmp_path / "data.xlsx")


def test_a_test_label_never_seen_in_training_names_file_and_line(tmp_path):
    write_table(tmp_path / "train.csv", ["a", "b", "c", "d", "e", "f"], ["x", "y", "z"] * 2)
    write_table(tmp_path / "test.jsonl", ["a", "b", "c"], ["x", "w", "z"])
    with pytest.raises(DataError, match=r"test.jsonl, line 2: the label 'w' is not one of the training data's "
                                        r"classes \('x', 'y', 'z'\)"):
        split_reviews(tmp_path, validation_split=0.5)


def test_a_class_too_small_to_split_is_named_and_a_validation_file_is_used_instead(tmp_path):
    texts = [f"review {i}" for i in range(21)]
    write_table(tmp_path / "train.tsv", texts, ["common"] * 10 + ["other"] * 10 + ["rare"])
    write_table(tmp_path / "test.tsv", texts[:3], ["common", "other", "rare"])
    with pytest.raises(DataError, match=r"the class 'rare' has only 1 training example\(s\), too few .*--validation-file"):
        split_reviews(tmp_path)
    write_table(tmp_path / "dev.csv", ["held out a", "held out b"], ["rare", "common"])
    train, validation, test = split_reviews(tmp_path)
    assert len(train.texts) == 21 and validation.texts == ["held out a", "held out b"]
    assert validation.labels == [train.class_names.index("rare"), train.class_names.index("common")]
    assert train.class_names == ("common", "other", "rare") == test.class_names


def test_two_files_for_one_split_are_refused(tmp_path):
    for suffix in (".csv", ".jsonl"):
        write_table(tmp_path / f"train{suffix}", ["a", "b"], ["x", "y"])
    with pytest.raises(DataError, match="holds train.csv and train.jsonl for the train split; keep one"):
        split_reviews(tmp_path)


def test_split_files_are_found_whatever_the_case_of_their_names(tmp_path):
    write_table(tmp_path / "train.csv", ["good", "bad", "fine", "awful"], ["pos", "neg", "pos", "neg"])
    write_table(tmp_path / "test.tsv", ["nice", "poor"], ["pos", "neg"])
    (tmp_path / "train.csv").rename(tmp_path / "Train.CSV")
    (tmp_path / "test.tsv").rename(tmp_path / "TEST.tsv")
    train, _, test = loaders.load_splits(DataSource(data_dir=str(tmp_path)))
    assert len(train.texts) == 4 and test.texts == ["nice", "poor"]
    write_table(tmp_path / "train.jsonl", ["a", "b"], ["pos", "neg"])
    with pytest.raises(DataError, match="holds Train.CSV and train.jsonl for the train split; keep one"):
        loaders.load_splits(DataSource(data_dir=str(tmp_path)))


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch):
    def refused(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "iterdir", refused)
    with pytest.raises(DataError, match="cannot list the folder .* \\(Permission denied\\); check its permissions"):
        loaders.load_splits(DataSource(data_dir=str(tmp_path)))


def test_test_texts_that_are_also_training_texts_are_named(tmp_path, caplog):
    write_table(tmp_path / "train.csv", ["good film", "bad film", "fine", "awful"], ["pos", "neg", "pos", "neg"])
    write_table(tmp_path / "test.csv", ["nice", " bad film", "poor"], ["pos", "neg", "neg"])
    with caplog.at_level("WARNING", logger="src.data.loaders"):
        loaders.load_splits(DataSource(data_dir=str(tmp_path)))
    assert "1 of the 3 texts of" in caplog.text and "test.csv (the first: line 3) are also in" in caplog.text
    caplog.clear()
    write_table(tmp_path / "test.csv", ["nice", "poor"], ["pos", "neg"])
    with caplog.at_level("WARNING", logger="src.data.loaders"):
        loaders.load_splits(DataSource(data_dir=str(tmp_path)))
    assert "also in" not in caplog.text


def test_tokenizer_keeps_what_short_informal_text_says():
    assert tokenize("Great :) #blessed @anna 😀 <3 but :-( http://x.io 10:30 a@b.c") == [
        "great", ":)", "#blessed", "@anna", "😀", "<3", "but", ":-(", "http", "x", "io", "10", "30", "a", "b", "c"]
    assert tokenize("Great :) #blessed", tokenizer="words") == ["great", "blessed"]
    old = TextPreprocessor().build_vocab(["a :) b"]).to_dict()
    del old["tokenizer"]  # a vocabulary saved before tokenizers had names
    assert TextPreprocessor.from_dict(old).tokenizer == "words"


def test_unlabeled_texts_come_from_the_named_file(tmp_path):
    (tmp_path / "extra.txt").write_text("first text\n\nsecond text\n", encoding="utf-8")
    write_table(tmp_path / "extra.jsonl", ["one", "", "two"], [None, None, None], "body")
    assert read_texts(tmp_path / "extra.txt") == ["first text", "second text"]
    assert read_texts(tmp_path / "extra.jsonl", "body") == ["one", "two"]
    own = TrainConfig(train_file=str(tmp_path / "t.csv"), test_file=str(tmp_path / "t.csv"))
    assert _unlabeled_texts(own) == []
    own.unlabeled = str(tmp_path / "extra.txt")
    assert _unlabeled_texts(own) == ["first text", "second text"]
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")  # pretrained on nothing, without a word
    with pytest.raises(DataError, match="blank.txt holds no text"):
        read_texts(tmp_path / "blank.txt")


def test_pretraining_reads_the_unlabeled_file_and_each_file_once(tmp_path, monkeypatch):
    reads = []
    for module, name in ((loaders, "read_table"), (pipeline, "read_texts")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *args, _read=original: reads.append(path) or _read(path, *args))
    rng = np.random.default_rng(1)
    vocabulary = ["good", "bad", "film", "plot", "great", "awful", "the", "a", "was", "and"]
    texts = [" ".join(rng.choice(vocabulary, 15)) for _ in range(80)]
    labels = ["pos" if ("good" in t) else "neg" for t in texts]
    write_table(tmp_path / "train.jsonl", texts, labels)
    write_table(tmp_path / "test.jsonl", texts[:20], labels[:20])
    (tmp_path / "more.txt").write_text("\n".join(" ".join(rng.choice(vocabulary, 30)) for _ in range(50)) + "\n")
    metrics = run_training(TrainConfig(
        data_dir=str(tmp_path), unlabeled=str(tmp_path / "more.txt"), output_dir=str(tmp_path / "model"),
        checkpoint_dir=str(tmp_path / "run"), epochs=1, **{**TINY, "pretrain_lm_epochs": 1.0}))
    assert metrics["lm_pretraining"]["unlabeled_reviews"] == 50
    assert metrics["lm_pretraining"]["training_reviews"] == 64  # 80 less the validation split
    # checked before the run starts, then used as read
    assert sorted(map(str, reads)) == sorted(str(tmp_path / name) for name in ("more.txt", "test.jsonl", "train.jsonl"))


def test_unlabeled_texts_without_pretraining_are_named_unused_and_not_read(tmp_path, caplog, monkeypatch):
    write_table(tmp_path / "train.csv", ["a good film", "a bad film"] * 10, ["pos", "neg"] * 10)
    write_table(tmp_path / "test.csv", ["good", "bad"], ["pos", "neg"])
    monkeypatch.setattr(pipeline, "read_texts", lambda *args: pytest.fail("--unlabeled was read"))
    cfg = TrainConfig(data_dir=str(tmp_path), unlabeled=str(tmp_path / "more.txt"), pretrain_lm_epochs=0)
    with caplog.at_level("WARNING"):
        assert pipeline._read_own_data(cfg).unlabeled is None
    assert "--pretrain-lm-epochs 0 and --vat-eps 0 turn off: " in caplog.text and "more.txt is not used" in caplog.text


def test_class_weights_weigh_each_class():
    logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    weighted = _criterion(3, [1.0, 1.0, 4.0], torch.device("cpu"))(logits, labels)
    each = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert weighted.item() == pytest.approx(((each[0] + 4 * each[1]) / 5).item())
    binary = _criterion(1, [0.5, 2.0], torch.device("cpu"))(torch.tensor([0.3, -0.2]), torch.tensor([1.0, 0.0]))
    each = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([0.3, -0.2]), torch.tensor([1.0, 0.0]),
                                                                reduction="none")
    assert binary.item() == pytest.approx(((4 * each[0] + each[1]) / 2).item())
    with pytest.raises(ValueError, match="3 positive numbers"):
        _criterion(3, [1.0, 0.0, 1.0], torch.device("cpu"))


def test_the_ngram_model_and_blend_of_three_classes(tmp_path):
    """Each class is told by a word pair whose words also occur in the other classes: only 2-grams separate."""
    rng = np.random.default_rng(0)
    pairs = {0: "red fox", 1: "fox red", 2: "red red"}
    labels = rng.integers(0, 3, 600)
    texts = [" ".join(rng.choice(["fox", "red", "dog", "cat"], 6)) + " " + pairs[int(y)] + " end" for y in labels]
    model = NgramModel.fit(texts[:450], labels[:450])
    scores = model.log_odds(texts[450:])
    assert model.classes == 3 and scores.shape == (150, 3)
    assert np.mean(scores.argmax(axis=1) == labels[450:]) > 0.9
    informative, noise = np.eye(3)[labels[450:]] * 4, rng.normal(size=(150, 3))
    blend = Blend.fit(noise, informative, labels[450:])
    assert blend.ngram_weight > 5 * abs(blend.lstm_weight) and len(blend.bias) == 3
    NgramBlend(model, blend).save(tmp_path)
    loaded = NgramBlend.load(tmp_path)
    assert np.array_equal(loaded.combine(noise, texts[450:]), NgramBlend(model, blend).combine(noise, texts[450:]))
    with pytest.raises(ValueError, match="2 biases for 3 classes"):
        NgramBlend(model, Blend(1.0, 1.0, [0.0, 0.0]))


def test_chinese_text_without_spaces_is_learned_a_character_at_a_time():
    """Clauses of random characters, the class said by 好 (good) or 差 (bad) inside one: read a clause at a
    time ("social") every clause is a token no other text has, and the n-gram model has nothing to learn
    from; read a character at a time (the default) it learns them."""
    rng = np.random.default_rng(0)
    filler = list("电影故事演员音乐画面剧情导演觉得非常真的这个那个")
    labels = rng.integers(0, 2, 400)
    texts = ["".join(rng.choice(filler, 5)) + "很" + "差好"[y] + "".join(rng.choice(filler, 3)) + "，"
             + "".join(rng.choice(filler, 6)) + "。" for y in labels]
    model = NgramModel.fit(texts[:300], labels[:300], tokenizer="unicode")
    assert np.mean((model.log_odds(texts[300:]) >= 0) == labels[300:]) > 0.95
    with pytest.raises(DataError, match="no word occurs in 2 or more training reviews"):
        NgramModel.fit(texts[:300], labels[:300], tokenizer="social")


def test_model_files_carry_their_class_names():
    assert LSTMConfig(vocab_size=10).classes == ("negative", "positive")  # models saved before class names
    config = LSTMConfig(vocab_size=10, output_dim=3, class_names=["a", "b", "c"])
    assert LSTMConfig.from_dict(json.loads(json.dumps(config.__dict__))).classes == ("a", "b", "c")
    for names in (["a", "b"], ["a", "a", "b"], ["a", "b", 3], ["a", "b", "x" * 201]):
        with pytest.raises(ValueError, match="class_names must be 3 distinct names"):
            LSTMConfig(vocab_size=10, output_dim=3, class_names=names)


def test_a_model_that_does_not_fit_its_classes_or_loss_is_refused(tmp_path):
    """A binary model on four-class loaders, a model whose class names are in another order or missing for two
    classes other than negative and positive, a loss for another number of outputs: each would train without a
    word to a meaningless or mislabelled model; Trainer and create_trainer refuse."""
    from torch.utils.data import DataLoader

    from src.data.datasets import ReviewDataset
    from src.training import Trainer, create_trainer

    names = ("awful", "poor", "good", "great")
    loader = DataLoader(ReviewDataset([np.array([2, 3])] * 8, [0, 1, 2, 3] * 2, class_names=names), batch_size=4)
    with pytest.raises(ValueError, match=r"the data have 4 classes \(awful, poor, good, great\) but the model has 1 "
                                         r"output\(s\); build it with output_dim=4"):
        create_trainer(tiny_model(), loader, loader, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="the model's classes are great, good, poor, awful but the data's awful, "
                                         "poor, good, great"):
        create_trainer(tiny_model(output_dim=4, class_names=names[::-1]), loader, loader, checkpoint_dir=tmp_path)
    model = tiny_model(output_dim=4, class_names=names)
    assert create_trainer(model, loader, loader, checkpoint_dir=tmp_path).model is model

    def trainer(model, data, criterion):
        return Trainer(model, data, data, torch.optim.Adam(model.parameters()), criterion, checkpoint_dir=tmp_path)

    with pytest.raises(ValueError, match="BCEWithLogitsLoss needs one output but the model has 4"):
        trainer(model, loader, torch.nn.BCEWithLogitsLoss())
    two = DataLoader(ReviewDataset([np.array([2, 3])] * 2, [0, 1], class_names=("ham", "spam")), batch_size=2)
    with pytest.raises(ValueError, match="the data have 2 classes .* build it with output_dim=1"):
        trainer(model, two, torch.nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="CrossEntropyLoss needs one output per class but the model has one"):
        trainer(tiny_model(), two, torch.nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="the data's classes are ham, spam, but the model names none, so it would "
                                         "label them negative, positive; build it with class_names="):
        trainer(tiny_model(), two, torch.nn.BCEWithLogitsLoss())  # it saved a spam filter saying "positive"
    assert trainer(tiny_model(output_dim=2, class_names=("ham", "spam")), two, torch.nn.CrossEntropyLoss()).model
    assert trainer(tiny_model(class_names=("ham", "spam")), two, torch.nn.BCEWithLogitsLoss()).model
    zero_one = DataLoader(ReviewDataset([np.array([2, 3])] * 2, [0, 1], class_names=("0", "1")), batch_size=2)
    assert trainer(tiny_model(), zero_one, torch.nn.BCEWithLogitsLoss()).model  # unnamed: IMDB's two, as 0 and 1
    numbered = DataLoader(ReviewDataset([np.array([2, 3])] * 3, [0, 1, 2], class_names=("0", "1", "2")), batch_size=3)
    assert trainer(tiny_model(output_dim=3), numbered, torch.nn.CrossEntropyLoss()).model  # unnamed: 0, 1, 2


@pytest.fixture(scope="module")
def four_classes(imdb_tree, tmp_path_factory):
    """A model trained on a real four-class task (IMDB's ratings, as Parquet); returns (data, model dir, metrics)."""
    root = tmp_path_factory.mktemp("four-classes")
    data = write_rating_tables(imdb_tree, root / "data", ".parquet")
    cfg = TrainConfig(data_dir=str(data), output_dir=str(root / "model"), checkpoint_dir=str(root / "run"), epochs=5,
                      class_weights="balanced", ngram_blend=True, **TINY)
    return data, root / "model", run_training(cfg)


def test_four_classes_train_predict_and_evaluate(four_classes, tmp_path, capsys):
    data, model_dir, metrics = four_classes
    names = ("awful", "good", "great", "poor")
    predictor = SentimentPredictor.from_pretrained(model_dir)
    assert predictor.class_names == names and predictor.model.config.output_dim == 4
    test = metrics["test"]
    assert set(test["per_class"]) == set(names) and np.array(test["confusion_matrix"]).shape == (4, 4)
    assert test["accuracy"] > 0.40 and test["macro_f1"] > 0.30  # chance: 0.25
    assert predictor.ngram_blend.model.classes == 4 and len(metrics["ngram_blend"]["bias"]) == 4
    assert sum(row["support"] for row in test["per_class"].values()) == test["n_examples"] == 2000

    texts = ["A masterpiece, the best film of the decade.", "Dull, and far too long."]
    write_table(tmp_path / "new.jsonl", texts, [None, None], "body")
    assert predict_main(["--model-dir", str(model_dir), "--input", str(tmp_path / "new.jsonl"), "--text-column",
                         "body"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == texts
    for line, probabilities in zip(lines, predictor.class_probabilities(texts)):
        assert set(line["probabilities"]) == set(names) and "probability" not in line
        assert sum(line["probabilities"].values()) == pytest.approx(1.0)
        assert line["label"] == names[int(np.argmax(probabilities))]

    assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(data), "--output-dir", str(tmp_path)]) == 0
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(test["accuracy"])  # the saved model, as training reported
    assert evaluation["class_names"] == list(names) and 0.5 < evaluation["roc_auc"] <= 1
    assert all((tmp_path / name).is_file() for name in ("confusion_matrix.png", "roc_curve.png"))


def test_a_multi_class_model_refuses_imdb_and_unknown_labels(four_classes, imdb_tree, tmp_path, capsys):
    _, model_dir, _ = four_classes
    assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(imdb_tree), "--output-dir",
                          str(tmp_path)]) == 1
    assert "are not IMDB's negative and positive" in capsys.readouterr().err
    write_table(tmp_path / "odd.csv", ["a fine film", "meh"], ["great", "mediocre"])
    assert evaluate_main(["--model-dir", str(model_dir), "--file", str(tmp_path / "odd.csv"), "--output-dir",
                          str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "odd.csv, line 3: the label 'mediocre' is not one of" in err


def test_evaluate_reads_a_folder_of_only_a_test_file_and_names_a_missing_folder(four_classes, tmp_path, capsys):
    """A folder with test.csv alone was taken for IMDB ("not IMDB's classes"); a mistyped one too."""
    data, model_dir, _ = four_classes
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    (only_test / "test.parquet").write_bytes((data / "test.parquet").read_bytes())
    assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(only_test), "--output-dir",
                          str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["class_names"] == list(
        SentimentPredictor.from_pretrained(model_dir).class_names)
    assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(only_test), "--split", "validation",
                          "--output-dir", str(tmp_path / "out")]) == 1
    assert "only-test has no validation file; name one with --file" in capsys.readouterr().err
    assert evaluate_main(["--model-dir", str(model_dir), "--data-dir", str(tmp_path / "typo"), "--output-dir",
                          str(tmp_path / "out")]) == 1
    assert "typo does not exist" in capsys.readouterr().err


def test_two_named_classes_from_files_given_one_by_one(imdb_tree, tmp_path, capsys):
    """String labels with --positive-label, files named by flag, other column names: labels and `probability`."""
    from src.data import load_imdb

    for split in ("train", "test"):
        reviews = load_imdb(imdb_tree, split)
        picked = np.random.default_rng(0).choice(len(reviews.texts), 600 if split == "train" else 200, replace=False)
        write_table(tmp_path / f"{split}-reviews.jsonl", [reviews.texts[i] for i in picked],
                    ["liked" if reviews.labels[i] else "disliked" for i in picked], "body", "verdict")
    args = ["--train-file", str(tmp_path / "train-reviews.jsonl"), "--test-file", str(tmp_path / "test-reviews.jsonl"),
            "--text-column", "body", "--label-column", "verdict", "--output-dir", str(tmp_path / "model"),
            "--checkpoint-dir", str(tmp_path / "run"), "--epochs", "1", "--embedding-dim", "16", "--hidden-dim", "8",
            "--max-length", "80", "--pretrain-lm-epochs", "0", "--quiet", "--no-tensorboard"]
    assert train_main(args) == 1
    assert "say which one is positive with --positive-label" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "model").exists()  # nothing written before the check
    assert train_main(args + ["--positive-label", "liked"]) == 0
    predictor = SentimentPredictor.from_pretrained(tmp_path / "model")
    result = predictor.predict("An absolute delight from start to finish.")
    assert predictor.class_names == ("disliked", "liked")
    assert result["probability"] == pytest.approx(result["probabilities"]["liked"])
    assert result["label"] == ("liked" if result["probability"] >= 0.5 else "disliked")


def test_resume_refuses_other_columns_and_positive_label(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = [" ".join(rng.choice(["good", "bad", "film", "plot", "great", "awful"], 12)) for _ in range(120)]
    labels = ["up" if text.count("good") + text.count("great") > text.count("bad") + text.count("awful") else "down"
              for text in words]
    write_table(tmp_path / "train.csv", words, labels, "t", "l")
    write_table(tmp_path / "test.csv", words[:40], labels[:40], "t", "l")
    args = ["--data-dir", str(tmp_path), "--text-column", "t", "--label-column", "l", "--positive-label", "up",
            "--output-dir", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "run"), "--embedding-dim", "8",
            "--hidden-dim", "8", "--pretrain-lm-epochs", "0", "--quiet", "--no-tensorboard"]
    assert train_main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    changed = [a if a != "up" else "down" for a in args]
    assert train_main(changed + ["--epochs", "2", "--resume", "auto"]) == 2
    assert "--positive-label (checkpoint 'up', now 'down')" in capsys.readouterr().err
    assert train_main(args + ["--epochs", "2", "--resume", "auto", "--class-weights", "balanced"]) == 2
    assert "--class-weights (checkpoint 'none', now 'balanced')" in capsys.readouterr().err
    bare = ["--output-dir", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "run"), "--resume", "auto",
            "--quiet", "--no-tensorboard"]
    assert train_main(bare + ["--epochs", "2"]) == 0  # the folder, columns and positive class from the checkpoint
    assert json.loads((tmp_path / "run" / "config.json").read_text())["label_column"] == "l"


def test_settings_newer_than_a_checkpoint_count_as_their_old_values():
    saved = {name: value for name, value in TrainConfig().as_dict().items()
             if name not in ("tokenizer", "class_weights", "text_column")}  # written before these existed
    given = TrainConfig.from_settings({"tokenizer": "social", "epochs": 3})
    changed, _ = given.settle_resume(saved)
    assert changed == {"--tokenizer": ("words", "social")}
    bare = TrainConfig.from_settings({"epochs": 3})
    assert bare.settle_resume(saved) == ({}, {"--tokenizer": "words"}) and bare.tokenizer == "words"


def test_labels_read_the_same_in_every_format_and_by_their_aliases(tmp_path):
    write_table(tmp_path / "a.csv", ["x", "y", "z"], ["1.0", "0", "True"])
    write_table(tmp_path / "b.jsonl", ["x", "y", "z"], [1.0, 0, True])
    assert read_table(tmp_path / "a.csv").labels == read_table(tmp_path / "b.jsonl").labels == ["1", "0", "true"]
    assert label_indices(["0", "POS", "negative", "1"], ("negative", "positive"), "f", ["l"] * 4) == [0, 1, 0, 1]
    assert label_indices(["neg", "pos"], ("0", "1"), "f", ["l"] * 2) == [0, 1]


def test_an_imdb_model_evaluates_on_a_file_of_0_and_1_and_predicts_every_row(tmp_path, capsys):
    processor = TextPreprocessor().build_vocab(["a good film", "a bad film"])
    save_model_directory(tmp_path / "model", tiny_model(vocab_size=processor.vocab_size), processor)
    write_table(tmp_path / "test.csv", ["a good film", "a bad film", ""], [1, 0, 1], "review")
    assert evaluate_main(["--model-dir", str(tmp_path / "model"), "--file", str(tmp_path / "test.csv"),
                          "--text-column", "review", "--output-dir", str(tmp_path / "eval")]) == 1
    assert "line 4: the text ('review') is empty" in capsys.readouterr().err
    assert predict_main(["--model-dir", str(tmp_path / "model"), "--input", str(tmp_path / "test.csv"),
                         "--text-column", "review"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["a good film", "a bad film", ""]
    assert {line["label"] for line in lines} <= {"negative", "positive"}
    write_table(tmp_path / "test.csv", ["a good film", "a bad film"], [1, 0], "review")
    assert evaluate_main(["--model-dir", str(tmp_path / "model"), "--file", str(tmp_path / "test.csv"),
                          "--text-column", "review", "--output-dir", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["n_examples"] == 2


def test_a_sample_too_small_for_a_class_is_refused(tmp_path):
    write_table(tmp_path / "train.csv", [f"r{i}" for i in range(106)], ["big"] * 100 + ["small"] * 3 + ["mid"] * 3)
    write_table(tmp_path / "test.csv", ["a", "b"], ["big", "small"])
    with pytest.raises(DataError, match="--max-train-samples 20 keeps no training example of the class 'small'"):
        split_reviews(tmp_path, max_train_samples=20)


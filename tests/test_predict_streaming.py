"""predict reads, classifies and writes in chunks: line numbers, CSV output, and an atomic --output."""

import csv
import io
import json
import subprocess
import sys

import pytest

from src.data import TextPreprocessor, tables
from src.inference import predict
from src.inference.predictor import SentimentPredictor
from src.models.model_dir import save_model_directory
from tests.helpers import REPO_ROOT, tiny_model, write_table


@pytest.fixture
def model_dir(tmp_path):
    processor = TextPreprocessor().build_vocab(["a good film", "a bad film", "dull plot"])
    return save_model_directory(tmp_path / "model", tiny_model(vocab_size=processor.vocab_size), processor)


def test_lines_are_numbered_as_in_the_file_and_read_in_chunks(model_dir, tmp_path, capsys, monkeypatch):
    batches = []
    real = SentimentPredictor.predict_batch
    monkeypatch.setattr(SentimentPredictor, "predict_batch",
                        lambda self, texts, batch_size=64: batches.append(len(texts)) or real(self, texts, batch_size))
    monkeypatch.setattr(predict, "CHUNK", 2)
    (tmp_path / "in.txt").write_text("a good film\n\n  \ndull plot\r\na bad film\nfilm\n", encoding="utf-8")
    assert predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.txt")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["line"], o["text"]) for o in lines] == [(1, "a good film"), (4, "dull plot"), (5, "a bad film"),
                                                         (6, "film")]
    assert batches == [2, 2]  # never more than a chunk in memory
    expected = SentimentPredictor.from_pretrained(model_dir).predict_batch([o["text"] for o in lines])
    assert [o["probability"] for o in lines] == pytest.approx([e["probability"] for e in expected])


def test_command_line_texts_that_are_not_utf8_are_read_in_their_encoding_or_refused(model_dir, capsys):
    """A Latin-1 terminal's "café" reaches Python as "caf" and a lone surrogate, which no output can hold: the
    JSON line could not be written, and the message was the codec's."""
    from_terminal = "a good café".encode("latin-1").decode("utf-8", "surrogateescape")
    assert predict.main(["--model-dir", str(model_dir), "--encoding", "latin-1", from_terminal]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "a good café"
    assert predict.main(["--model-dir", str(model_dir), "dull plot", from_terminal]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "text 2 on the command line is not utf-8 (byte 10: 0xe9); set the terminal to UTF-8, or name its " \
           "encoding with --encoding" in captured.err


def test_csv_in_csv_out(model_dir, tmp_path):
    write_table(tmp_path / "in.csv", ["a good film", "", "dull, dull plot"], ["x", "y", "z"], "review", "other")
    assert predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.csv"), "--text-column",
                         "review", "--format", "csv", "--output", str(tmp_path / "out.csv")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert [(r["line"], r["text"]) for r in rows] == [("1", "a good film"), ("2", ""), ("3", "dull, dull plot")]
    assert list(rows[0]) == ["line", "text", "label", "probability", "probability_negative", "probability_positive"]
    for row in rows:
        assert float(row["probability"]) == float(row["probability_positive"])
        assert row["label"] == ("positive" if float(row["probability"]) >= 0.5 else "negative")


def test_a_failure_midway_leaves_the_old_output(model_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "out.jsonl").write_text("old predictions\n")
    monkeypatch.setattr(predict, "CHUNK", 1)
    (tmp_path / "in.jsonl").write_text('{"text": "a good film"}\n{"text": 3}\n', encoding="utf-8")
    assert predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.jsonl"), "--output",
                         str(tmp_path / "out.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl, line 2: the text ('text') is not a string but int 3" in err and err.count("\n") == 1
    assert (tmp_path / "out.jsonl").read_text() == "old predictions\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl")]  # no temporary file left


def test_a_damaged_settings_file_or_a_folder_as_output_is_one_line(model_dir, tmp_path, capsys):
    """A table --input reads the trained text column from config.json, which was outside predict's error
    handling; a folder as --output is not a full disk."""
    write_table(tmp_path / "in.csv", ["a good film"], ["x"], "text", "other")
    (model_dir / "config.json").write_text("not json")
    assert predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.csv")]) == 1
    err = capsys.readouterr().err
    assert "config.json is not a readable settings file" in err and err.count("\n") == 1
    processor = TextPreprocessor().build_vocab(["a good film"])
    good = save_model_directory(tmp_path / "good", tiny_model(vocab_size=processor.vocab_size), processor)
    (tmp_path / "out").mkdir()
    assert predict.main(["--model-dir", str(good), "--output", str(tmp_path / "out"), "a good film"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another --output" in err and "free some space" not in err


def test_an_output_that_is_the_input_file_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a good film\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(tmp_path / "in.txt")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output",
                      str(tmp_path / "link.txt")])
    assert exit_info.value.code == 2 and "is the --input file" in capsys.readouterr().err
    assert (tmp_path / "in.txt").read_text(encoding="utf-8") == "a good film\n"


def test_a_line_longer_than_a_text_may_be_is_refused_without_reading_it_whole(model_dir, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setattr(tables, "MAX_FIELD_CHARACTERS", 100)
    monkeypatch.setattr(tables, "MAX_LINE_CHARACTERS", 200)
    for name, lines, long_line in [
            ("in.txt", ["a good film", "x" * 100, "y" * 5000], 3),
            ("cr.txt", ["x" * 100 + "\r", "x" * 99 + "\r\r\r" + "y" * 50], 2),  # no \r takes it below the limit
            ("in.jsonl", ['{"text": "a good film"}', '{"text": "' + "z" * 300 + '"}'], 2),
            ("in.csv", ["text", "a good film", "z" * 300], 3)]:
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
        assert predict.main(["--model-dir", str(model_dir), "--input", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert f"{name}, line {long_line}: longer than" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_reader_that_stops_reading_ends_predict_quietly_and_a_full_output_is_named(model_dir, tmp_path):
    """`predict ... | head -1`: the closed pipe ends predict with SIGPIPE's status and nothing on stderr (it
    blamed --output, naming None); standard output on a full device is named as such; `--input -` reads
    standard input."""
    (tmp_path / "in.txt").write_text("a good film\n" * 20000, encoding="utf-8")
    command = [sys.executable, "-m", "src.inference.predict", "--model-dir", str(model_dir), "--input",
               str(tmp_path / "in.txt")]
    reader = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(reader.stdout.readline())["line"] == 1
    reader.stdout.close()  # as head does after its line
    assert reader.wait(timeout=120) == 141 and reader.stderr.read() == b""
    reader = subprocess.Popen([*command, "--output", "/dev/stdout"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # --output naming the pipe: written in place
    assert json.loads(reader.stdout.readline())["line"] == 1
    reader.stdout.close()
    assert reader.wait(timeout=120) == 141 and reader.stderr.read() == b""
    piped = subprocess.run([*command[:-1], "-"], cwd=REPO_ROOT, input="a good film\ndull plot\n", text=True,
                           capture_output=True, timeout=120)  # '-': standard input, one text per line
    assert piped.returncode == 0 and [json.loads(line)["text"] for line in piped.stdout.splitlines()] == [
        "a good film", "dull plot"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, cwd=REPO_ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "error: could not write the predictions to standard output (No space left on device)\n"

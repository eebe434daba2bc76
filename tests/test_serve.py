"""The HTTP service (src/inference/serve.py) on a real uvicorn server on 127.0.0.1, with a small trained model."""

import asyncio
import contextlib
import html.parser
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from src.inference import EnsemblePredictor
from src.inference import serve
from src.inference.batching import BatchFailed, MicroBatcher, Overloaded
from src.inference.serve import Limits, create_app, exposure_warning, resolve_api_key
from tests.helpers import REPO_ROOT, ServedApp

TEXTS = ["great superb film", "awful boring plot", "", "the film was a plot " * 9, "loved it 😀 great"]
LIMITS = Limits(max_texts=4, max_text_chars=200, max_body_bytes=4000, max_explain_texts=2)
REQUIRED_CSP = ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")


@pytest.fixture(scope="module")
def served(predictor, model_dir):
    with ServedApp(create_app(predictor, model_dir, limits=LIMITS, batch_wait_ms=1)) as running:
        yield running


def request(url, method, path, body=None, headers=None, encode_chunked=False):
    """(status, headers, body as JSON where it is JSON else bytes) of one request on a new connection."""
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=encode_chunked)
        response = connection.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, response.headers, json.loads(data) if is_json else data
    finally:
        connection.close()


def post(url, payload, headers=None, path="/predict"):
    return request(url, "POST", path, json.dumps(payload).encode("utf-8"),
                   {"Content-Type": "application/json", **(headers or {})})


def assert_same_predictions(got, expected):
    assert [p["label"] for p in got] == [e["label"] for e in expected]
    for answer, wanted in zip(got, expected):
        assert set(answer) >= set(wanted)
        assert answer["probabilities"] == pytest.approx(wanted["probabilities"], abs=1e-6)
        assert answer["probability"] == pytest.approx(wanted["probability"], abs=1e-6)


class Recording:
    """A predictor that records the size of each model call and how many ever ran at once."""

    def __init__(self, inner, fail=False):
        self.inner, self.fail = inner, fail
        self.sizes, self.batch_sizes, self.running, self.most_at_once = [], set(), 0, 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @contextlib.contextmanager
    def _call(self, count):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.sizes.append(count)
        try:
            if self.fail:
                raise RuntimeError("the model broke")
            yield
        finally:
            with self.lock:
                self.running -= 1

    def predict_batch(self, texts, batch_size=64):
        self.batch_sizes.add(batch_size)
        with self._call(len(texts)):
            return self.inner.predict_batch(texts, batch_size)

    def explain_batch(self, texts):
        with self._call(len(texts)):
            return self.inner.explain_batch(texts)


def test_predictions_are_predict_batch_in_input_order(served, predictor):
    status, headers, body = post(served.url, {"texts": TEXTS[:4]})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert_same_predictions(body["predictions"], predictor.predict_batch(TEXTS[:4]))
    assert [p["label"] for p in body["predictions"][:2]] == ["positive", "negative"]
    status, _, body = post(served.url, {"texts": TEXTS[4:], "explain": False})
    assert status == 200 and body["predictions"][0]["label"] == "positive"


def test_explain_gives_the_words_contributions(served, predictor):
    texts = ["loved it 😀 great film", "hated this awful plot"]
    status, _, body = post(served.url, {"texts": texts, "explain": True})
    assert status == 200
    assert_same_predictions(body["predictions"], predictor.predict_batch(texts))
    for text, prediction in zip(texts, body["predictions"]):
        explanation = prediction["explanation"]
        assert explanation["target"] == "positive" and explanation["unit"] == "log-odds"
        for word in explanation["words"]:
            assert text[word["start"]: word["end"]].lower() == word["word"]
    first, second = (p["explanation"]["words"] for p in body["predictions"])
    assert {w["word"]: w["contribution"] for w in first}["great"] > 0
    assert {w["word"]: w["contribution"] for w in second}["awful"] < 0


BAD_REQUESTS = [  # (what, body, headers besides a JSON content type, status, a phrase of the error)
    ("invalid JSON", b'{"texts": [', {}, 400, "not valid JSON"),
    ("not UTF-8", b'{"texts": ["\xff"]}', {}, 400, "not UTF-8"),
    ("not an object", b'["a review"]', {}, 400, "must be a JSON object"),
    ("texts missing", b'{}', {}, 400, '"texts" must be a list of strings'),
    ("texts a string", b'{"texts": "a review"}', {}, 400, '"texts" must be a list of strings'),
    ("a number among the texts", b'{"texts": ["fine", 3]}', {}, 400, "text 1 is int, not a string"),
    ("a null among the texts", b'{"texts": [null]}', {}, 400, "text 0 is null"),
    ("an empty list", b'{"texts": []}', {}, 400, "empty"),
    ("an unknown field", b'{"text": ["a"]}', {}, 400, "unknown field 'text'"),
    ("explain not a boolean", b'{"texts": ["a"], "explain": "yes"}', {}, 400, '"explain" must be true or false'),
    ("an unpaired surrogate", b'{"texts": ["\\ud800"]}', {}, 400, "surrogate"),
    ("too many texts", json.dumps({"texts": ["a"] * 5}).encode(), {}, 413, "at most 4"),
    ("too many texts to explain", json.dumps({"texts": ["a"] * 3, "explain": True}).encode(), {}, 413,
     "explains at most 2"),
    ("too long a text", json.dumps({"texts": ["a" * 201]}).encode(), {}, 413, "at most 200 per text"),
    ("too large a body", json.dumps({"texts": [" " * 4000]}).encode(), {}, 413, "limit of 4000 bytes"),
    ("plain text", b'{"texts": ["a"]}', {"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
    ("no content type", b'{"texts": ["a"]}', {"Content-Type": ""}, 415, "no Content-Type"),
    ("another charset", b'{"texts": ["a"]}', {"Content-Type": "application/json; charset=latin-1"}, 415,
     "application/json"),
]


@pytest.mark.parametrize("what, body, headers, status, phrase", BAD_REQUESTS, ids=[r[0] for r in BAD_REQUESTS])
def test_a_bad_request_gets_a_json_error_that_says_what_is_wrong(served, what, body, headers, status, phrase):
    got, response_headers, answer = request(served.url, "POST", "/predict", body,
                                            {"Content-Type": "application/json", **headers})
    assert got == status and set(answer) == {"error"}, answer
    assert phrase in answer["error"]


def test_a_quoted_charset_is_utf8_too(served):
    """`charset="utf-8"` is the same parameter as `charset=utf-8` (HTTP allows the quotes); it got 415."""
    status, _, body = post(served.url, {"texts": ["fine"]}, {"Content-Type": 'application/json; charset="UTF-8"'})
    assert status == 200 and len(body["predictions"]) == 1


def test_a_body_larger_than_its_declared_size_is_cut_off_while_read(served):
    chunks = (b'{"texts": ["' + b"a" * 1000 + b'"]}' if i == 0 else b" " * 1000 for i in range(5))
    status, _, answer = request(served.url, "POST", "/predict", chunks, {"Content-Type": "application/json"},
                                encode_chunked=True)
    assert status == 413 and "limit of 4000 bytes" in answer["error"]


def test_unknown_paths_and_methods_get_json_errors(served):
    status, _, answer = request(served.url, "GET", "/nothing/here")
    assert status == 404 and answer == {"error": "no such path: /nothing/here (the API is described at /docs)"}
    status, headers, answer = request(served.url, "GET", "/predict")
    assert status == 405 and headers["Allow"] == "POST" and answer == {"error": "GET is not allowed on /predict"}
    status, _, answer = request(served.url, "GET", "/static/missing.js")
    assert status == 404 and "error" in answer


def test_the_api_key_is_required_and_checked(predictor, model_dir):
    key = "k3y-0f-th3-s3rv1c3"
    with ServedApp(create_app(predictor, model_dir, api_key=key)) as running:
        for headers, phrase in (({}, "needs an API key"), ({"Authorization": f"Basic {key}"}, "needs an API key"),
                                ({"Authorization": "Bearer wrong"}, "wrong API key"),
                                ({"Authorization": f"Bearer {key}x"}, "wrong API key")):
            status, response_headers, answer = post(running.url, {"texts": ["great"]}, headers)
            assert status == 401 and phrase in answer["error"]
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
        status, _, answer = post(running.url, {"texts": ["great"]}, {"Authorization": f"Bearer {key}"})
        assert status == 200 and answer["predictions"][0]["label"] == "positive"
        assert request(running.url, "GET", "/health")[2]["auth_required"] is True
        assert request(running.url, "GET", "/metadata")[2]["auth_required"] is True
    with ServedApp(create_app(predictor, model_dir)) as running:
        assert request(running.url, "GET", "/health")[2]["auth_required"] is False


def test_the_api_key_comes_from_the_flag_or_the_environment():
    assert resolve_api_key(None, {}) is None
    assert resolve_api_key(None, {"LSTM_SENTIMENT_API_KEY": "abc"}) == "abc"
    assert resolve_api_key("flag", {"LSTM_SENTIMENT_API_KEY": "abc"}) == "flag"
    for bad in ("", "  ", "ключ", " padded"):
        with pytest.raises(ValueError):
            resolve_api_key(bad, {})


def concurrently(url, texts, explain_every=0):
    """POST each text in its own request from its own thread, all released at once; the answers in order."""
    answers = [None] * len(texts)
    barrier = threading.Barrier(len(texts))

    def send(index):
        barrier.wait()
        explain = bool(explain_every) and index % explain_every == 0
        answers[index] = post(url, {"texts": [texts[index]], "explain": explain})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def test_concurrent_requests_are_answered_correctly_in_fewer_model_calls(predictor, model_dir):
    texts = [f"{'great superb' if i % 2 else 'awful boring'} film number {i}" for i in range(20)]
    expected = predictor.predict_batch(texts)
    recording = Recording(predictor)
    with ServedApp(create_app(recording, model_dir, batch_wait_ms=300)) as running:
        answers = concurrently(running.url, texts)
        health = request(running.url, "GET", "/health")[2]
    assert all(status == 200 for status, _, _ in answers)
    assert_same_predictions([body["predictions"][0] for _, _, body in answers], expected)
    assert sum(recording.sizes) == 20 and len(recording.sizes) < 20 and recording.most_at_once == 1
    assert health["batches"] == len(recording.sizes) and health["texts_classified"] == 20


def test_a_batch_holds_at_most_max_batch_texts_and_explain_never_runs_beside_it(predictor, model_dir):
    texts = [f"{'loved' if i % 2 else 'hated'} the plot {i}" for i in range(12)]
    recording = Recording(predictor)
    with ServedApp(create_app(recording, model_dir, batch_wait_ms=50, max_batch=3, batch_size=2)) as running:
        answers = concurrently(running.url, texts, explain_every=4)
    assert all(status == 200 for status, _, _ in answers)
    assert [("explanation" in body["predictions"][0]) for _, _, body in answers] == [i % 4 == 0 for i in range(12)]
    assert max(recording.sizes) <= 3 and sum(recording.sizes) == 12 and recording.most_at_once == 1
    assert recording.batch_sizes == {2}  # the model's own batches within a call: --batch-size


def test_stopping_the_batcher_fails_the_requests_in_and_waiting_for_the_model():
    release = threading.Event()

    def run(texts):
        release.wait(10)
        return texts

    async def scenario():
        batcher = MicroBatcher(run, wait_s=0, max_batch=1)
        await batcher.start()
        requests = [asyncio.ensure_future(batcher.submit([text])) for text in ("in the model", "waiting")]
        await asyncio.sleep(0.05)
        await batcher.stop()
        busy_after_stop = batcher.model_busy  # the service then exits without waiting for the thread's call
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 30)  # never hangs
        for _ in range(100):
            if not batcher.model_busy:
                break
            await asyncio.sleep(0.05)
        return outcomes, busy_after_stop, batcher.model_busy

    outcomes, busy_after_stop, busy_at_the_end = asyncio.run(scenario())
    assert [type(outcome) for outcome in outcomes] == [BatchFailed, BatchFailed]
    assert busy_after_stop and not busy_at_the_end


def test_a_refused_request_is_told_when_the_queued_work_will_be_done():
    def run(texts):
        time.sleep(0.2)
        return texts

    async def scenario():
        batcher = MicroBatcher(run, wait_s=0, max_batch=4, max_queued=40)
        await batcher.start()
        assert batcher.seconds_to_clear() == 1  # no rate measured yet
        await batcher.submit(["a", "b", "c", "d"])
        measured = batcher.texts_per_second  # 4 texts in at least 0.2 s
        batcher.texts_per_second, batcher.queued = 10.0, 35
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(["one too many"] * 6)
        batcher.queued = 0
        await batcher.stop()
        return measured, refused.value.retry_after_s

    measured, retry_after = asyncio.run(scenario())
    assert 0 < measured <= 20 and retry_after == 4  # 35 texts at 10 a second
    batcher = MicroBatcher(lambda texts: texts, wait_s=0, max_batch=1)
    batcher.texts_per_second, batcher.queued = 0.01, 100  # a slow model: capped at a minute
    assert batcher.seconds_to_clear() == 60


def test_a_cancelled_request_is_dropped_and_frees_its_place_in_the_queue():
    release, calls = threading.Event(), []

    def run(texts):
        calls.append(list(texts))
        release.wait(10)
        return texts

    async def scenario():
        batcher = MicroBatcher(run, wait_s=0, max_batch=1, max_queued=2)
        await batcher.start()
        busy = asyncio.ensure_future(batcher.submit(["in the model"]))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):  # the caller gives up while its text waits
            await asyncio.wait_for(batcher.submit(["given up"]), 0.05)
        queued_after_timeout = batcher.queued
        release.set()
        answers = [await busy, await batcher.submit(["after"])]
        await batcher.stop()
        return queued_after_timeout, answers

    queued_after_timeout, answers = asyncio.run(scenario())
    assert queued_after_timeout == 1 and answers == [["in the model"], ["after"]]
    assert calls == [["in the model"], ["after"]]  # the text given up on never reached the model


def test_a_full_queue_refuses_at_once_with_503_and_retry_after(predictor, model_dir):
    entered, release = threading.Event(), threading.Event()

    class Slow(Recording):
        def predict_batch(self, texts, batch_size=64):
            entered.set()
            release.wait(30)
            return super().predict_batch(texts, batch_size)

    def in_background(texts, explain=False):
        answer = queue.Queue()
        threading.Thread(target=lambda: answer.put(post(running.url, {"texts": texts, "explain": explain}))).start()
        return answer

    def wait_for_queued(count):
        deadline = time.monotonic() + 30
        while request(running.url, "GET", "/health")[2]["texts_queued"] < count:
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.01)

    cost = serve.EXPLAIN_COST  # an explained text counts as its integrated gradients' model passes
    limits = Limits(max_texts=2, max_explain_texts=1, max_queued_texts=2 + cost)
    with ServedApp(create_app(Slow(predictor), model_dir, limits=limits)) as running:
        first = in_background(["great", "awful"])
        assert entered.wait(30)  # two texts are in the model
        fitting = in_background(["fine"], explain=True)  # 2 + cost: just within the limit
        wait_for_queued(2 + cost)
        for texts, explain in ((["good"], False), (["dull"], True)):
            status, headers, answer = post(running.url, {"texts": texts, "explain": explain})
            assert status == 503 and headers["Retry-After"] == "1"
            assert answer["error"].startswith(f"the server is busy: {2 + cost} texts' worth of work already waits") \
                and "--max-queued-texts" in answer["error"]
        release.set()
        assert first.get(timeout=60)[0] == 200 and fitting.get(timeout=60)[0] == 200
        assert post(running.url, {"texts": ["good", "bad"], "explain": False})[0] == 200  # taken again
    with pytest.raises(ValueError, match="max-queued-texts"):
        Limits(max_texts=8, max_queued_texts=4)
    with pytest.raises(ValueError, match=f"counting {cost} each"):
        Limits(max_texts=2, max_explain_texts=2, max_queued_texts=2 * cost - 1)


def test_a_model_failure_is_a_short_json_500_and_logged(predictor, model_dir, caplog):
    with ServedApp(create_app(Recording(predictor, fail=True), model_dir)) as running:
        for explain in (False, True):
            status, _, answer = post(running.url, {"texts": ["great"], "explain": explain})
            assert status == 500 and answer == {"error": "the model failed on this request; the server's log says why"}
    assert "the model broke" in caplog.text


def test_any_other_failure_is_a_json_500_with_the_security_headers(predictor, model_dir, caplog):
    class Unwritable(Recording):  # an answer JSON cannot carry: rendering the response fails
        def predict_batch(self, texts, batch_size=64):
            return [{"label": "positive", "probability": float("nan")} for _ in texts]

    with ServedApp(create_app(Unwritable(predictor), model_dir)) as running:
        status, headers, answer = post(running.url, {"texts": ["great"]})
    assert status == 500 and answer == {"error": "internal server error; the server's log says more"}
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and "POST /predict failed" in caplog.text


def test_an_ensemble_predicts_but_refuses_to_explain(predictor, model_dir):
    ensemble = EnsemblePredictor([predictor, predictor])
    with ServedApp(create_app(ensemble, [model_dir, model_dir])) as running:
        status, _, answer = post(running.url, {"texts": ["great film"]})
        assert status == 200 and answer["predictions"][0]["label"] == "positive"
        status, _, answer = post(running.url, {"texts": ["great film"], "explain": True})
        assert status == 400 and "ensemble" in answer["error"]
        metadata = request(running.url, "GET", "/metadata")[2]
    assert [member["vocab_size"] for member in metadata["members"]] == [predictor.preprocessor.vocab_size] * 2


def test_a_failing_explanation_is_a_server_error_not_the_clients(predictor, model_dir, caplog):
    class Failing:
        def __getattr__(self, name):
            return getattr(predictor, name)

        def explain_batch(self, texts):
            raise ValueError("shapes (3,) and (4,) do not align")

    with ServedApp(create_app(Failing(), model_dir)) as running:
        status, _, answer = post(running.url, {"texts": ["great film"], "explain": True})
    assert status == 500 and "shapes" not in answer["error"] and "shapes (3,)" in caplog.text


@pytest.mark.parametrize("host, status", [("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:8000", 200),
                                          ("evil.example:8000", 400), ("127.0.0.1.evil.example", 400), ("", 400)])
def test_a_loopback_service_answers_only_to_its_own_names(predictor, model_dir, host, status):
    allowed = serve._allowed_hosts("127.0.0.1")
    with ServedApp(create_app(predictor, model_dir, allowed_hosts=allowed)) as running:
        answer = request(running.url, "GET", "/health", headers={"Host": host})
    assert answer[0] == status
    if status == 400:
        assert "this server answers to localhost, 127.0.0.1, [::1]" in answer[2]["error"]
    assert serve._allowed_hosts("0.0.0.0") is None  # reached under names it cannot know: the key guards it
    assert serve._allowed_hosts("127.0.0.1").count("127.0.0.1") == 1  # the message named it twice


def test_metadata_describes_the_model_without_its_paths(served, predictor, model_dir):
    metadata = request(served.url, "GET", "/metadata")[2]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metadata["class_names"] == ["negative", "positive"] and metadata["test"] == metrics["test"]
    assert metadata["vocab_size"] == predictor.preprocessor.vocab_size
    assert metadata["settings"]["embedding_dim"] == 16 and metadata["settings"]["tokenizer"] == "unicode"
    assert not {"data_dir", "output_dir", "checkpoint_dir", "glove_cache_dir"} & set(metadata["settings"])
    assert str(model_dir.parent) not in json.dumps(metadata)
    assert metadata["limits"] == {"max_texts": 4, "max_text_chars": 200, "max_body_bytes": 4000,
                                  "max_explain_texts": 2, "max_queued_texts": 1024}
    health = request(served.url, "GET", "/health")[2]
    assert health["status"] == "ok" and health["class_names"] == ["negative", "positive"]
    # the tests' CPU (conftest) has no bfloat16: every call in float32 (int8 only when asked for)
    assert (metadata["precision"], health["precision"]) == ("float32", "float32")
    post(served.url, {"texts": ["great", "awful"]})
    assert request(served.url, "GET", "/health")[2]["texts_classified"] == health["texts_classified"] + 2


def copy_with(model_dir, target, files):
    shutil.copytree(model_dir, target)
    for name, content in files.items():
        path = target / name
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    return target


def test_metadata_reads_the_card_temperature_and_lstm_only_metrics(predictor, model_dir, tmp_path):
    metrics = {"test": {"accuracy": 0.9, "roc_auc": float("nan")}, "test_lstm_only": {"accuracy": 0.8}}
    described = copy_with(model_dir, tmp_path / "model", {
        "metrics.json": json.dumps(metrics).encode(), "MODEL_CARD.md": "# A model\n<script>alert(1)</script>\n".encode()})
    with ServedApp(create_app(predictor, described)) as running:
        metadata = request(running.url, "GET", "/metadata")[2]
    assert metadata["test"] == {"accuracy": 0.9, "roc_auc": None} and metadata["test_lstm_only"] == {"accuracy": 0.8}
    assert metadata["temperature"] == predictor.temperature != 1.0  # the one the predictor divides by
    assert metadata["model_card"] == "# A model\n<script>alert(1)</script>\n"


def test_metadata_survives_missing_and_malformed_files(predictor, model_dir, tmp_path):
    broken = copy_with(model_dir, tmp_path / "broken", {
        "config.json": b"{", "metrics.json": b"[1, 2]", "MODEL_CARD.md": b"\xff card"})
    missing = copy_with(model_dir, tmp_path / "missing", {"config.json": None, "metrics.json": None, "MODEL_CARD.md": None})
    for directory, card in ((broken, "\ufffd card"), (missing, None)):
        with ServedApp(create_app(predictor, directory)) as running:
            metadata = request(running.url, "GET", "/metadata")[2]
            assert post(running.url, {"texts": ["great"]})[0] == 200
        assert metadata["settings"] == {} and metadata["test"] is None
        assert metadata["model_card"] == card and "test_lstm_only" not in metadata


class _Markup(html.parser.HTMLParser):
    """What a page loads and whether it holds anything inline."""

    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.inline = [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append(attrs.get("src"))
        if tag == "link" and attrs.get("rel") == "stylesheet":
            self.styles.append(attrs["href"])
        if tag == "style" or "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline.append((tag, attrs))

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(("script", data))

    def handle_endtag(self, tag):
        self._in_script = False


def test_the_page_and_its_assets_are_served_with_nothing_inline(served):
    status, headers, page = request(served.url, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    markup = _Markup()
    markup.feed(page.decode("utf-8"))
    assert markup.scripts == ["static/app.js"] and markup.styles == ["static/style.css"] and not markup.inline
    assert b"http://" not in page and b"https://" not in page
    for path, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        status, headers, body = request(served.url, "GET", f"/static/{path}")
        assert status == 200 and kind in headers["Content-Type"]
        assert body == (serve.STATIC_DIR / path).read_bytes()
        assert b"http://" not in body and b"https://" not in body and b"@import" not in body
    script = (serve.STATIC_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_every_response_has_the_security_headers(served):
    answers = [request(served.url, "GET", path) for path in ("/", "/static/app.js", "/static/style.css", "/health",
                                                            "/metadata", "/openapi.json", "/nothing")]
    answers += [post(served.url, {"texts": []}), post(served.url, {"texts": ["great"]})]
    for status, headers, _ in answers:
        policy = headers["Content-Security-Policy"]
        assert all(directive in policy for directive in REQUIRED_CSP) and "unsafe" not in policy, policy
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = request(served.url, "GET", "/docs")
    assert status == 200 and "https://cdn.jsdelivr.net" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_non_loopback_warning():
    for host in ("0.0.0.0", "::", "192.168.1.7", "example.org"):
        assert "--api-key" in exposure_warning(host, None)
        assert exposure_warning(host, "a-key") is None
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert exposure_warning(host, None) is None


def test_a_port_in_use_and_a_bad_model_directory_are_one_line(model_dir, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve.main(["--model-dir", str(model_dir), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1
    assert serve.main(["--model-dir", str(tmp_path / "none"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "is not a model directory" in err and err.count("\n") == 1


@pytest.mark.parametrize("flags", [["--max-texts", "0"], ["--max-explain-texts", "0"], ["--port", "70000"],
                                   ["--batch-wait-ms", "-1"], ["--api-key", ""], ["--threads", "0"],
                                   ["--batch-size", "0"], ["--max-queued-texts", "0"],
                                   ["--max-texts", "8", "--max-queued-texts", "4"]])
def test_impossible_flags_are_usage_errors(model_dir, flags, capsys):
    with pytest.raises(SystemExit) as stopped:
        serve.main(["--model-dir", str(model_dir), *flags])
    assert stopped.value.code == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_the_command_serves_warns_on_an_outside_address_and_stops_on_ctrl_c(model_dir):
    env = {k: v for k, v in os.environ.items() if k != "LSTM_SENTIMENT_API_KEY"}
    process = subprocess.Popen([sys.executable, "-m", "src.inference.serve", "--model-dir", str(model_dir),
                                "--host", "0.0.0.0", "--port", "0"], cwd=REPO_ROOT, env=env,
                               stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        seen = []
        while not seen or not seen[-1].startswith("serving"):
            seen.append(lines.get(timeout=120))
        assert any(line.startswith("warning: listening on 0.0.0.0") for line in seen)
        port = int(seen[-1].split(":")[2].split("/")[0])
        status, _, health = request(f"http://127.0.0.1:{port}", "GET", "/health")
        assert status == 200 and health["status"] == "ok"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0

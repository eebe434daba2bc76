"""The service's web page in a real browser (Playwright driving Debian's Chromium), on a small trained model.

Also takes the screenshot of docs/serving.md with a real model:

    .venv/bin/python -m tests.test_web_page --model-dir MODEL_DIR --output docs/images/serving-page.png
"""

import argparse
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from src.inference import load_predictor
from src.inference.serve import create_app
from tests.helpers import ServedApp

pytestmark = pytest.mark.slow  # Playwright starts its driver and Chromium

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<script>window.__xss = 1; alert(1)</script><img src=x onerror="window.__xss = 2; alert(2)"> great'
CARD = "# A card\n<b>bold?</b> <img src=x onerror=\"window.__xss = 3\">\n"
# how Chromium logs a 4xx answer (the key and ensemble tests ask for them), unlike a refused load or a script error
ANSWERED_ERROR = "Failed to load resource: the server responded with a status of 4"
SCREENSHOT_REVIEW = ("A wonderful, moving film: the acting is superb and the score is beautiful, though the "
                     "middle hour drags and the dialogue is sometimes clumsy. I loved it anyway.")


def launch(playwright):
    """Debian's Chromium, headless, without its background traffic (Playwright never downloads a browser here)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-background-networking"])


def classify_on_page(page, url: str, review: str) -> None:
    """Open the page, wait for the model's description, classify ``review`` and wait for the result."""
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#review", review)
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])")


def percent(p: float) -> str:
    """As the page shows a probability (app.js)."""
    shown = f"{100 * p:.1f}"
    return ">99.9%" if shown == "100.0" and p < 1 else "<0.1%" if shown == "0.0" and p > 0 else f"{shown}%"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); Playwright's own browsers are not used")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def described(model_dir, tmp_path_factory):
    """The model directory's files with a model card that holds markup (only /metadata reads them)."""
    copy = tmp_path_factory.mktemp("hostile-card") / "model"
    shutil.copytree(model_dir, copy)
    (copy / "MODEL_CARD.md").write_text(CARD, encoding="utf-8")
    return copy


@pytest.fixture(scope="module")
def served(predictor, described):
    with ServedApp(create_app(predictor, described)) as running:
        yield running


@pytest.fixture
def page(browser):
    """A fresh page; afterwards, no request left 127.0.0.1 (any that tried was stopped), no script error and no
    Content-Security-Policy violation was logged, and no dialog opened."""
    context = browser.new_context()
    outside, problems = [], []

    def only_loopback(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and not message.text.startswith(ANSWERED_ERROR) else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()
    assert outside == [] and problems == []


def shown_words(page):
    return page.eval_on_selector_all("#review-text span.word",
                                     "spans => spans.map(s => [s.textContent, s.className, s.title])")


def test_a_review_is_labelled_and_its_words_coloured(page, served, predictor, model_dir):
    review = "Loved it 😀 great film, but an awful plot"
    classify_on_page(page, served.url, review)
    expected = predictor.explain(review)
    assert page.text_content("#label") == expected["label"] == "positive"
    assert page.text_content("#probability") == percent(expected["probabilities"]["positive"])
    assert page.text_content("#review-text") == review
    spans = {text: (classes.split(), title) for text, classes, title in shown_words(page)}
    words = [w for w in expected["explanation"]["words"] if w["start"] is not None]
    assert len(spans) == len(words)
    for word in words:
        classes, title = spans[review[word["start"]: word["end"]]]
        if word["contribution"] != 0:
            assert ("toward" if word["contribution"] > 0 else "against") in classes
        assert float(title.split()[0]) == pytest.approx(word["contribution"], abs=1e-3)
        assert title.endswith("log-odds toward positive")
    assert "toward" in spans["great"][0] and "against" in spans["awful"][0]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    facts = page.text_content("#model-facts")
    assert "negative, positive" in facts and percent(metrics["test"]["accuracy"]) in facts
    calibration = model_dir / "calibration.json"
    temperature = json.loads(calibration.read_text())["temperature"] if calibration.exists() else 1.0
    assert f"Temperature{round(temperature, 3):g}" in facts  # rounded: 19.999999999948066 was shown whole


def test_markup_in_a_review_or_the_model_card_is_shown_as_text_and_runs_nothing(page, served):
    classify_on_page(page, served.url, HOSTILE)
    assert page.text_content("#review-text") == HOSTILE
    assert page.text_content("#model-card") == CARD
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("document.querySelectorAll('#result b, #model b').length") == 0


def test_the_key_field_appears_when_the_server_needs_one(page, predictor, model_dir):
    with ServedApp(create_app(predictor, model_dir, api_key="page-key-123")) as running:
        page.goto(running.url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#api-key")
        page.fill("#review", "great superb film")
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])")
        assert "needs an API key" in page.text_content("#error")
        page.fill("#api-key", "page-key-123")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])")
        assert page.text_content("#label") == "positive" and page.is_hidden("#error")


def test_an_ensemble_shows_the_label_without_colours(page, predictor, model_dir):
    from src.inference import EnsemblePredictor

    with ServedApp(create_app(EnsemblePredictor([predictor, predictor]), [model_dir, model_dir])) as running:
        classify_on_page(page, running.url, "awful boring film")
        assert page.text_content("#label") == "negative"
        assert "cannot explain" in page.text_content("#error")
        assert page.text_content("#review-text") == "awful boring film" and shown_words(page) == []


def screenshot(model_dir: str, output: str) -> None:
    """The page with a classified review, from a real model directory, as a PNG (docs/serving.md)."""
    from playwright.sync_api import sync_playwright

    with ServedApp(create_app(load_predictor([model_dir]), model_dir)) as running, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        classify_on_page(page, running.url, SCREENSHOT_REVIEW)
        page.screenshot(path=output, full_page=False)
        browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Take the screenshot of the service's page for docs/serving.md.")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--output", default="docs/images/serving-page.png")
    arguments = parser.parse_args()
    screenshot(arguments.model_dir, arguments.output)

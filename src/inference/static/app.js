// The page of lstm-sentiment's HTTP service (src/inference/serve.py).
// Everything a user or the model hands in is shown with textContent, never parsed as markup.
"use strict";

(function () {
  const LEVELS = 4; // shades of green and red, by a word's share of the largest contribution
  let apiKeyRequired = false;

  function byId(id) {
    return document.getElementById(id);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // One decimal; a probability that would round to 0 or 100 without being it says so.
  function percent(p) {
    const shown = (100 * p).toFixed(1);
    if (shown === "100.0" && p < 1) return ">99.9%";
    if (shown === "0.0" && p > 0) return "<0.1%";
    return shown + "%";
  }

  function showError(message) {
    const box = byId("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function showAuth(required) {
    apiKeyRequired = apiKeyRequired || required;
    byId("auth").hidden = !apiKeyRequired;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (err) {
      return { error: "the server answered " + response.status + " without JSON" };
    }
  }

  async function predict(text, explain) {
    const headers = { "Content-Type": "application/json" };
    const key = byId("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    const response = await fetch("predict", {
      method: "POST", headers: headers, body: JSON.stringify({ texts: [text], explain: explain }),
    });
    const body = await readJson(response);
    if (response.status === 401) showAuth(true);
    return { ok: response.ok, status: response.status, body: body };
  }

  // Python counts characters as code points, JavaScript strings as UTF-16 units: offsets index code points.
  function renderWords(text, explanation) {
    const box = byId("review-text");
    box.replaceChildren();
    const chars = Array.from(text);
    const words = explanation ? explanation.words : [];
    const located = words.filter((w) => Number.isInteger(w.start) && Number.isInteger(w.end) && w.end > w.start)
      .sort((a, b) => a.start - b.start);
    const largest = words.reduce((most, w) => Math.max(most, Math.abs(w.contribution)), 0);
    let cursor = 0;
    for (const word of located) {
      if (word.start < cursor || word.end > chars.length) continue; // overlapping or outside: left plain
      box.append(document.createTextNode(chars.slice(cursor, word.start).join("")));
      box.append(wordSpan(chars.slice(word.start, word.end).join(""), word, largest, explanation));
      cursor = word.end;
    }
    box.append(document.createTextNode(chars.slice(cursor).join("")));
    const placed = new Set(located);
    renderUnlocated(words.filter((w) => !placed.has(w)), largest, explanation);
  }

  function wordSpan(shown, word, largest, explanation) {
    const span = element("span", "word", shown);
    const c = word.contribution;
    if (largest > 0 && c !== 0) {
      const level = Math.max(1, Math.ceil((LEVELS * Math.abs(c)) / largest));
      span.classList.add(c > 0 ? "toward" : "against", "level-" + level);
    }
    const sign = c > 0 ? "+" : "";
    span.title = sign + c.toFixed(3) + " " + explanation.unit + " toward " + explanation.target;
    span.dataset.contribution = String(c);
    return span;
  }

  function renderUnlocated(words, largest, explanation) {
    const box = byId("unlocated");
    box.replaceChildren();
    box.hidden = words.length === 0;
    if (!words.length) return;
    box.append(document.createTextNode("Also counted, not found in the text as typed: "));
    for (const word of words) {
      box.append(wordSpan(word.word, word, largest, explanation), document.createTextNode(" "));
    }
  }

  function renderLegend(prediction, classNames) {
    const legend = byId("legend");
    const explanation = prediction.explanation;
    if (!explanation) {
      legend.textContent = "";
      return;
    }
    const against = classNames.length === 2 ? "toward " + classNames.find((n) => n !== explanation.target)
      : "against it";
    legend.replaceChildren(
      element("span", "word toward level-4", "green"),
      document.createTextNode(" pushed toward " + explanation.target + ", "),
      element("span", "word against level-4", "red"),
      document.createTextNode(" " + against + "; the stronger the colour, the larger the push " +
        "(hover a word for its number, in " + explanation.unit + ")."));
  }

  function renderPrediction(text, prediction) {
    const classNames = Object.keys(prediction.probabilities);
    byId("label").textContent = prediction.label;
    byId("probability").textContent = percent(prediction.probabilities[prediction.label]);
    const list = byId("probabilities");
    list.replaceChildren();
    for (const name of classNames) {
      list.append(element("li", name === prediction.label ? "chosen" : "", name + ": " +
        percent(prediction.probabilities[name])));
    }
    renderLegend(prediction, classNames);
    renderWords(text, prediction.explanation);
    byId("result").hidden = false;
  }

  async function classify(event) {
    event.preventDefault();
    const text = byId("review").value;
    showError("");
    if (!text.trim()) {
      showError("Paste a review first.");
      return;
    }
    const button = byId("submit");
    button.disabled = true;
    byId("status").textContent = "classifying...";
    try {
      let answer = await predict(text, true);
      let note = "";
      if (answer.status === 400) { // a model that cannot explain (an ensemble): the label alone
        note = answer.body.error;
        answer = await predict(text, false);
      }
      if (!answer.ok) {
        showError(answer.body.error || "the server answered " + answer.status);
        return;
      }
      renderPrediction(text, answer.body.predictions[0]);
      if (note) showError("No word colours: " + note);
    } catch (err) {
      showError("The server could not be reached (" + err.message + ").");
    } finally {
      button.disabled = false;
      byId("status").textContent = "";
    }
  }

  function fact(list, term, value) {
    if (value === null || value === undefined || value === "") return;
    list.append(element("dt", "", term), element("dd", "", String(value)));
  }

  function renderModel(meta) {
    const facts = byId("model-facts");
    facts.replaceChildren();
    fact(facts, "Classes", meta.class_names.join(", "));
    const models = meta.members || [meta];
    for (const model of models) {
      const prefix = models.length > 1 ? model.name + ": " : "";
      if (model.test && typeof model.test.accuracy === "number") {
        fact(facts, prefix + "Test accuracy", percent(model.test.accuracy) +
          (model.test.n_examples ? " of " + model.test.n_examples + " texts" : ""));
      }
      if (model.test_lstm_only && typeof model.test_lstm_only.accuracy === "number") {
        fact(facts, prefix + "Test accuracy, LSTM alone", percent(model.test_lstm_only.accuracy));
      }
      fact(facts, prefix + "Vocabulary", model.vocab_size);
      fact(facts, prefix + "Temperature",
        typeof model.temperature === "number" ? Number(model.temperature.toFixed(3)) : model.temperature);
    }
    fact(facts, "Runtime", meta.runtime);
    const card = models.map((m) => m.model_card).filter((c) => typeof c === "string").join("\n\n");
    byId("model-card").textContent = card;
    byId("card-box").hidden = !card;
    showAuth(Boolean(meta.auth_required));
  }

  async function loadModel() {
    try {
      const response = await fetch("metadata");
      const meta = await readJson(response);
      if (!response.ok) {
        showError(meta.error || "the model's description did not load");
        return;
      }
      renderModel(meta);
      document.body.dataset.ready = "true";
    } catch (err) {
      showError("The server could not be reached (" + err.message + ").");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    byId("review-form").addEventListener("submit", classify);
    loadModel();
  });
})();

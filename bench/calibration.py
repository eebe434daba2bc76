"""Calibration of trained model directories: the expected calibration error (15 bins) on the test split
before and after temperature scaling, with the temperature fitted on the model's own validation split
exactly as training fits it (``src/training/pipeline.py``), and the test accuracy both ways.

Models trained before training fitted a temperature have no ``calibration.json``; this measures what the
temperature would give them. For a model that has one, the refitted temperature is printed beside the saved
one (they agree when the data are the ones it was trained on). One JSON line per model directory.

    .venv/bin/python bench/calibration.py --model-dir models [--model-dir other] [--output results.jsonl]
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.config import default_of  # noqa: E402
from src.data.loaders import DataSource, split_reviews  # noqa: E402
from src.inference import SentimentPredictor  # noqa: E402
from src.inference.metrics import calibration, fit_temperature, metrics_for  # noqa: E402
from src.inference.predictor import probabilities_of  # noqa: E402
from src.models.model_dir import load_temperature, training_config  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402


def measure(model_dir: str, data_dir: str) -> Dict[str, Any]:
    config = training_config(model_dir)
    setting = {name: config.get(name, default_of(name)) for name in
               ("validation_split", "seed", "max_train_samples", "max_test_samples")}
    source = DataSource(**{**{k: v for k, v in config.items() if k in DataSource.__dataclass_fields__},
                           **({"data_dir": data_dir} if data_dir else {})})
    _, val, test = split_reviews(source, **setting)
    predictor = SentimentPredictor.from_pretrained(model_dir, device="cpu")
    val_scores, test_scores = predictor.scores(val.texts), predictor.scores(test.texts)
    temperature = fit_temperature(val.labels, val_scores)

    def scored(scores, data) -> Dict[str, float]:
        probabilities = probabilities_of(scores)
        return {"accuracy": metrics_for(data.labels, probabilities, data.class_names)["accuracy"],
                "ece": calibration(data.labels, probabilities)["ece"]}

    return {"model_dir": "/".join(Path(model_dir).resolve().parts[-2:]), "blended": predictor.ngram_blend is not None,
            "validation_reviews": len(val.labels), "test_reviews": len(test.labels),
            "temperature": temperature, "saved_temperature": load_temperature(model_dir),
            "validation_before": scored(val_scores, val), "validation_after": scored(val_scores / temperature, val),
            "test_before": scored(test_scores, test), "test_after": scored(test_scores / temperature, test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", action="append", required=True)
    parser.add_argument("--data-dir", help="the data, where the models' config.json names another place")
    parser.add_argument("--output", help="append the JSON lines here too")
    args = parser.parse_args()
    machine = cpu_facts()
    for model_dir in args.model_dir:
        result = {**measure(model_dir, args.data_dir), "machine": machine}
        line = json.dumps(result)
        print(line, flush=True)
        if args.output:
            with open(args.output, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()

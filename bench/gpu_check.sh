#!/usr/bin/env bash
# GPU check: the default model on the full IMDB training split for 2 epochs, in float32 and with --amp.
# Prints the card, epoch times, tokens/s and peak GPU memory, one JSON line per run.
#   bash bench/gpu_check.sh [DATA_DIR]      (DATA_DIR holds aclImdb_v1.tar.gz or aclImdb/; default data/imdb)
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${1:-data/imdb}
python=${PYTHON:-.venv/bin/python}
"$python" - "$data_dir" <<'PY'
import json, sys, tempfile, time
import torch
from src.training.pipeline import TrainConfig, run_training

if not torch.cuda.is_available():
    sys.exit("no CUDA device: this check needs a GPU")
print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
for amp in (False, True):
    work = tempfile.mkdtemp(prefix="gpu-check-")
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    metrics = run_training(TrainConfig(data_dir=sys.argv[1], epochs=2, amp=amp, device="cuda", quiet=True,
                                       early_stopping_patience=None, checkpoint_dir=f"{work}/run",
                                       output_dir=f"{work}/model", tensorboard=False))
    history = metrics["history"]
    print(json.dumps({"amp": amp, "epoch_seconds": [round(s, 1) for s in history["epoch_times"]],
                      "tokens_per_second": [round(t) for t in history["tokens_per_second"]],
                      "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                      "test_accuracy": round(metrics["test"]["accuracy"], 4),
                      "total_seconds": round(time.perf_counter() - started, 1)}))
PY

#!/usr/bin/env bash
# GPU check: the default model on the full IMDB training split for 2 epochs, in float32 and with --amp,
# through both LSTM paths (packed cuDNN call and padded per-direction LSTMs). It times training only:
# no language-model pretraining, and the head of long reviews without word dropout, as in the README's table.
# Prints the card, then one JSON line per run: epoch times, tokens/s, peak GPU memory, test accuracy.
#   bash bench/gpu_check.sh [DATA_DIR]      (DATA_DIR holds aclImdb_v1.tar.gz, aclImdb/ or train.csv/test.csv;
#                                            default data/imdb; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${1:-data/imdb}
python=${PYTHON:-.venv/bin/python}
"$python" - "$data_dir" <<'PY'
import json, sys, tempfile, time, traceback
import torch
from src.training.pipeline import TrainConfig, run_training

if not torch.cuda.is_available():
    sys.exit("no CUDA device: this check needs a GPU")
print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                  "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported()}), flush=True)
for sequence_path in ("packed", "padded"):
    for amp in (False, True):
        work = tempfile.mkdtemp(prefix="gpu-check-")
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            metrics = run_training(TrainConfig(
                data_dir=sys.argv[1], epochs=2, amp=amp, device="cuda", quiet=True, sequence_path=sequence_path,
                early_stopping_patience=None, checkpoint_dir=f"{work}/run", output_dir=f"{work}/model",
                tensorboard=False, pretrain_lm_epochs=0, truncation="head", embedding_dropout=0.0))
        except Exception:
            print(json.dumps({"sequence_path": sequence_path, "amp": amp, "error": traceback.format_exc()}), flush=True)
            continue
        history = metrics["history"]
        print(json.dumps({"sequence_path": sequence_path, "amp": amp,
                          "epoch_seconds": [round(s, 1) for s in history["epoch_times"]],
                          "tokens_per_second": [round(t) for t in history["tokens_per_second"]],
                          "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                          "val_accuracy": [round(a, 4) for a in history["val_accuracies"]],
                          "test_accuracy": round(metrics["test"]["accuracy"], 4),
                          "total_seconds": round(time.perf_counter() - started, 1)}), flush=True)
PY

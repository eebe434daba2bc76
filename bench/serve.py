"""Serving speed: the HTTP service (src/inference/serve.py) against in-process predict_batch on the same reviews.

Takes ``--reviews`` IMDB test reviews (a seeded sample), times the model directory's
``predict_batch`` on them in this process (same runtime), then starts
``python -m src.inference.serve`` on 127.0.0.1 (a free port) as a subprocess, waits
for ``/health``, warms it up, and sends every review as its own ``POST /predict``
from ``--clients`` concurrent clients (asyncio, one keep-alive connection each) on
this machine, so the clients share its cores with the server. Prints one JSON
line (requests/s, reviews/s, latency percentiles, errors, the in-process
reviews/s and the ratio, the server's mean batch, the CPU and thread counts) and
appends it to ``--output`` if given. It stops by itself: after the reviews, or
at ``--timeout`` seconds, whichever comes first.

    .venv/bin/python bench/serve.py --model-dir models [--data-dir ../shared/data/imdb] [--reviews 2000]
"""

import argparse
import asyncio
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from src.data import load_imdb  # noqa: E402
from src.inference import load_predictor  # noqa: E402
from src.inference.onnx_model import export_onnx  # noqa: E402
from src.models.lstm_model import LSTMClassifier  # noqa: E402
from src.models.model_dir import load_model_directory, save_model_directory  # noqa: E402
from src.inference.serve import DEFAULT_BATCH_WAIT_MS, SERVE_BATCH_SIZE  # noqa: E402
from src.utils.io import atomic_write_text  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402

REQUEST_TIMEOUT_S = 30


def sample_reviews(data_dir: str, count: int, seed: int = 0) -> List[str]:
    texts = load_imdb(data_dir, "test").texts
    return random.Random(seed).sample(list(texts), min(count, len(texts)))


def in_process_rate(predictor, texts: List[str], rounds: int = 3) -> float:
    """Reviews per second of ``predict_batch`` on ``texts`` in this process: the median of ``rounds``."""
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        predictor.predict_batch(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    return float(np.median(rates))


def start_server(args: argparse.Namespace) -> Tuple[subprocess.Popen, str]:
    """The service as a subprocess on a free port of 127.0.0.1, and its URL once it accepts connections."""
    command = [sys.executable, "-m", "src.inference.serve", "--model-dir", args.model_dir, "--port", "0",
               "--device", "cpu", "--runtime", args.runtime, "--batch-wait-ms", str(args.batch_wait_ms),
               "--max-batch", str(args.max_batch), "--batch-size", str(args.batch_size), *(["--threads", str(args.threads)] if args.threads else [])]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
                               env={k: v for k, v in os.environ.items() if k != "LSTM_SENTIMENT_API_KEY"})
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line.startswith("serving http://"):
            return process, line.split()[1].rstrip("/")
    process.kill()
    raise SystemExit("the server did not start; run the same command by hand to see why:\n" + " ".join(command))


def get_json(url: str) -> Dict[str, object]:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        return json.loads(response.read())


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a kept-alive connection and read its whole answer; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return status


def _request(host: str, port: int, text: str) -> bytes:
    body = json.dumps({"texts": [text]}).encode("utf-8")
    return (f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


async def _client(host: str, port: int, work: "asyncio.Queue[str]", latencies: List[float], errors: List[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not work.empty():
            text = work.get_nowait()
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(_exchange(reader, writer, _request(host, port, text)),
                                                REQUEST_TIMEOUT_S)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as err:
                errors.append(type(err).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(str(status))
    finally:
        writer.close()


async def load(url: str, texts: List[str], clients: int, timeout: float) -> Tuple[float, List[float], List[str]]:
    """Send every text from ``clients`` connections; (seconds, latencies of the answered, errors)."""
    host, port = url.split("//")[1].rsplit(":", 1)
    work: "asyncio.Queue[str]" = asyncio.Queue()
    for text in texts:
        work.put_nowait(text)
    latencies: List[float] = []
    errors: List[str] = []
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(_client(host, int(port), work, latencies, errors)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    errors += [f"{type(task.exception()).__name__}" for task in done if task.exception() is not None]
    if pending:
        errors.append(f"stopped at the {timeout:g} s timeout")
    return time.perf_counter() - started, latencies, errors


def measure(args: argparse.Namespace, texts: List[str]) -> Dict[str, object]:
    """The in-process rate before and after the service's, so that a machine whose speed drifted shows."""
    predictor = load_predictor([args.model_dir], device="cpu", runtime=args.runtime)
    predictor.predict_batch(texts[:64])  # warm-up
    in_process_before = in_process_rate(predictor, texts)
    process, url = start_server(args)
    try:
        health = get_json(url + "/health")
        asyncio.run(load(url, texts[: 4 * args.clients], args.clients, args.timeout))  # warm-up, not counted
        before = get_json(url + "/health")
        seconds, latencies, errors = asyncio.run(load(url, texts, args.clients, args.timeout))
        after = get_json(url + "/health")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    in_process_after = in_process_rate(predictor, texts)
    in_process = (in_process_before + in_process_after) / 2
    batches = int(after["batches"]) - int(before["batches"])
    rate = len(latencies) / seconds
    return {"bench": "serve", "model": "/".join(Path(args.model_dir).resolve().parts[-2:]),
            "runtime": health["runtime"],
            "reviews": len(texts), "clients": args.clients, "requests_per_s": round(rate, 1),
            "reviews_per_s": round(rate, 1), "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "in_process_reviews_per_s": round(in_process, 1),
            "in_process_before_after": [round(in_process_before, 1), round(in_process_after, 1)],
            "ratio": round(rate / in_process, 3), "server_batches": batches,
            "server_mean_batch": round((int(after["texts_classified"]) - int(before["texts_classified"]))
                                       / max(batches, 1), 1),
            "batch_wait_ms": args.batch_wait_ms, "max_batch": args.max_batch, "batch_size": args.batch_size,
            "server_threads": args.threads or torch.get_num_threads(), "in_process_threads": torch.get_num_threads(),
            **cpu_facts()}


def parse_arguments(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", default="../shared/data/imdb")
    parser.add_argument("--reviews", type=int, default=2000, help="test reviews, one per request")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnxruntime"))
    parser.add_argument("--threads", type=int, help="the server's --threads (default: its own default)")
    parser.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=SERVE_BATCH_SIZE, help="the server's --batch-size")
    parser.add_argument("--timeout", type=float, default=600, help="stop the load after this many seconds")
    parser.add_argument("--output", help="append the JSON line to this file")
    parser.add_argument("--default-sizes", action="store_true",
                        help="measure a model of the default sizes with --model-dir's vocabulary and untrained weights "
                             "(speed does not depend on the weights) instead of --model-dir itself")
    args = parser.parse_args(argv)
    if args.reviews < args.clients or args.clients < 1:
        parser.error("--reviews must be at least --clients, and --clients at least 1")
    return args


def untrained_default_model(model_dir: str, target: Path) -> str:
    """A model directory of TrainConfig's default sizes, ``model_dir``'s vocabulary and untrained weights, with
    its model.onnx."""
    _, preprocessor = load_model_directory(model_dir)
    torch.manual_seed(0)
    save_model_directory(target, LSTMClassifier(vocab_size=preprocessor.vocab_size), preprocessor, {})
    export_onnx(target)
    return str(target)


def main() -> None:
    args = parse_arguments()
    texts = sample_reviews(args.data_dir, args.reviews)
    if args.default_sizes:
        with tempfile.TemporaryDirectory() as folder:
            args.model_dir = untrained_default_model(args.model_dir, Path(folder) / "defaultsize" / "model")
            result = measure(args, texts)
    else:
        result = measure(args, texts)
    line = json.dumps(result)
    print(line)
    if args.output:
        previous = Path(args.output).read_text(encoding="utf-8") if Path(args.output).is_file() else ""
        atomic_write_text(args.output, previous + line + "\n")


if __name__ == "__main__":
    main()

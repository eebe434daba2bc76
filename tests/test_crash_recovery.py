"""The command line on real reviews, stopped by SIGTERM and killed with SIGKILL many times."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.utils.checkpoint_io import load_state
from tests.helpers import REPO_ROOT, train_script_arguments

pytestmark = pytest.mark.slow  # subprocesses

TINY = ["--embedding-dim", "16", "--hidden-dim", "16", "--max-length", "80", "--batch-size", "16",
        "--max-vocab-size", "5000", "--epochs", "2", "--pretrain-lm-epochs", "0", "--quiet"]


# one thread each: a model this small trains as fast, and the uninterrupted run can go on
# beside the killed ones on a 2-core machine (both sides use the same threads, so the same arithmetic)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(data, out, run, *extra):
    return [sys.executable, *train_script_arguments(data, out, run, *TINY, *extra)]


def training_starts(run_dir):
    log = run_dir / "train.log"
    return log.read_text().count("training epochs") if log.is_file() else 0


def wait_until_training(process, run_dir, started_before, timeout=120):
    """Block until ``process`` logs that its training loop started (signal handlers are in place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if training_starts(run_dir) > started_before:
            return True
        time.sleep(0.02)
    return False


def assert_checkpoints_loadable(run_dir):
    for path in run_dir.glob("*.pt"):
        load_state(path)  # raises on a torn or damaged file


def final_weights(out_dir):
    return load_state(out_dir / "model.pt")["model_state"]


def test_sigterm_writes_a_checkpoint_and_resume_finishes(csv_reviews, tmp_path):
    out, run = tmp_path / "model", tmp_path / "run"
    process = subprocess.Popen(command(csv_reviews, out, run), cwd=REPO_ROOT, env=ONE_THREAD, stderr=subprocess.PIPE,
                               text=True)
    assert wait_until_training(process, run, 0)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume auto" in stderr
    saved = Path(re.search(r"saved (\S+);", stderr).group(1))
    assert saved.parent == run and re.fullmatch(r"checkpoint_(mid_epoch|epoch_\d{3})\.pt", saved.name)  # or, if
    state = load_state(saved)  # the signal came during validation, after that epoch
    assert state["epoch_progress"] is None or state["epoch_progress"]["batches_done"] > 0
    done = subprocess.run(command(csv_reviews, out, run, "--resume", "auto"), cwd=REPO_ROOT, env=ONE_THREAD,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout


# long enough that the kills land before the run can finish, even on a fast machine
KILL_RUN = ["--save-every-steps", "1", "--epochs", "6", "--early-stopping-patience", "50"]
KILLS = 5


def test_sigkill_many_times_then_resume_equals_uninterrupted(csv_reviews, tmp_path):
    straight_out = tmp_path / "straight-model"
    straight = subprocess.Popen(command(csv_reviews, straight_out, tmp_path / "straight-run", *KILL_RUN),
                                cwd=REPO_ROOT, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    out, run = tmp_path / "model", tmp_path / "run"
    rng, kills = random.Random(1), 0
    for attempt in range(KILLS):
        extra = KILL_RUN + (["--resume", "auto"] if attempt else [])
        started_before = training_starts(run)
        process = subprocess.Popen(command(csv_reviews, out, run, *extra), cwd=REPO_ROOT, env=ONE_THREAD,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if wait_until_training(process, run, started_before):
            time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:
            process.kill()
            kills += 1
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (0, -signal.SIGKILL), f"attempt {attempt}: {stderr[-2000:]}"
        assert_checkpoints_loadable(run)
    assert kills == KILLS
    final = subprocess.run(command(csv_reviews, out, run, *KILL_RUN, "--resume", "auto"),
                           cwd=REPO_ROOT, env=ONE_THREAD, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    expected, actual = final_weights(straight_out), final_weights(out)
    for name, value in expected.items():
        assert torch.equal(value, actual[name]), name
    expected_test = json.loads((straight_out / "metrics.json").read_text())["test"]
    assert json.loads((out / "metrics.json").read_text())["test"] == expected_test

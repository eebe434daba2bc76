"""Importing ``src`` asks PyTorch for transparent huge pages (``THP_MEM_ALLOC_ENABLE``) before PyTorch is loaded,
so the setting takes effect, and keeps a value the user chose."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PROBE = """
import json, os, sys
import src
torch_loaded_by_src = "torch" in sys.modules
import torch
buffer = torch.ones(64 * 2**20 // 4)  # 64 MB, every page touched
huge_kb = sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:"))
print(json.dumps({"value": os.environ.get("THP_MEM_ALLOC_ENABLE"), "torch_loaded_by_src": torch_loaded_by_src,
                  "huge_mb": huge_kb / 1024}))
"""


def probe(**env):
    base = {name: value for name, value in os.environ.items() if name != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env={**base, **env}, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def huge_page_mode():
    """The kernel's transparent-huge-page mode (always, madvise or never), or None where it has none."""
    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not Path("/proc/self/smaps_rollup").exists() or not setting.exists():
        return None
    chosen = re.search(r"\[(\w+)\]", setting.read_text())
    return chosen.group(1) if chosen else None


def test_importing_src_sets_it_before_torch_and_keeps_the_users_value():
    if huge_page_mode() is None:
        pytest.skip("no /proc/self/smaps_rollup or transparent huge pages on this system")
    default, off = probe(), probe(THP_MEM_ALLOC_ENABLE="0")
    assert default["value"] == "1" and off["value"] == "0"
    assert not default["torch_loaded_by_src"]  # else PyTorch would have read the variable before it was set


@pytest.mark.skipif(huge_page_mode() != "madvise", reason="the kernel gives huge pages only to memory that asks "
                    "for them (transparent_hugepage/enabled: madvise) on the systems this test can tell apart")
def test_a_large_tensor_gets_huge_pages_only_when_asked():
    assert probe()["huge_mb"] >= 32
    assert probe(THP_MEM_ALLOC_ENABLE="0")["huge_mb"] < 8

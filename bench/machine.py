"""What every benchmark's JSON line says about the machine it ran on."""

import platform
from pathlib import Path
from typing import Dict

import torch


def cpu_facts() -> Dict[str, object]:
    """The CPU's name, whether it has native bfloat16 arithmetic, and torch's thread count and version."""
    flags, name = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": name, "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
            "threads": torch.get_num_threads(), "torch": torch.__version__}

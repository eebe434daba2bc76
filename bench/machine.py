"""What every benchmark's JSON line says about the machine it ran on."""

import sys
from pathlib import Path
from typing import Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.utils.device import cpu_has_native_bfloat16, cpu_name, cpuinfo_field  # noqa: E402


def cpu_facts() -> Dict[str, object]:
    """The CPU's name, family and model (which tell apart CPUs of one name: "AMD EPYC" is Zen 3 to Zen 5),
    whether it has native bfloat16 arithmetic, and torch's thread count and version."""
    family_model = f"{cpuinfo_field('cpu family') or '?'}/{cpuinfo_field('model') or '?'}"
    return {"cpu": cpu_name(), "cpu_family_model": family_model,
            "native_bf16": cpu_has_native_bfloat16(), "threads": torch.get_num_threads(), "torch": torch.__version__}

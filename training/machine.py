"""The machine a run trains on: what provenance records about it, and whether bf16 autocast may run.

bf16 autocast is chosen, never assumed. On CUDA it is the usual mixed precision. On a CPU it needs
AVX512-BF16 (or AMX) to run at all at speed, and even then it need not help: on this project's
development CPU a training step ran slower under bf16 autocast than in fp32
(docs/performance.md#design-measurements). So the CPU default is fp32.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# The CPU flags (Linux /proc/cpuinfo names) that decide speed for our convolutions and that a reader of
# a training record wants to see; the full flag list is long and says little.
RELEVANT_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


@lru_cache(maxsize=1)
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """(CPU model name, its feature flags) from /proc/cpuinfo; the platform's name and no flags elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.machine(), flags


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    _, flags = cpu_model_and_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def describe_machine(device: torch.device) -> dict:
    """What provenance records about the machine: CPU model, cores, relevant flags, torch, and the GPU if used."""
    model, flags = cpu_model_and_flags()
    machine = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": sorted(flags & set(RELEVANT_CPU_FLAGS)),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
        machine["cuda"] = torch.version.cuda
    return machine


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast training steps to, or None for fp32.

    precision: "auto" (bf16 on CUDA, fp32 on the CPU; see the module docstring for why), "fp32" or
    "bf16". ValueError for "bf16" on a CPU without AVX512-BF16/AMX-BF16 (it would be emulated, far slower)
    and for an unknown name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--precision bf16: this CPU has no AVX512-BF16 or AMX-BF16; use fp32")
    return torch.bfloat16

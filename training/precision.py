"""--precision auto: the precision a run trains in, bf16 autocast where it trains this network faster.

On CUDA, auto is the usual bf16 mixed precision. On a CPU the answer depends on the CPU, not on its flags:
without native bf16 (AVX512-BF16 or AMX-BF16) bf16 is emulated and about 10x slower, so fp32; with it, bf16
autocast trained vgg x0.5 slower than fp32 on the AVX512-BF16 Xeon of 2026-11 (129 against 176 images/s) and
vgg x0.25 1.6x faster on the AMD EPYC (Zen 4) of 2026-12-07 (docs/performance.md). So on such a CPU auto
times a few training steps of the run's own network in each precision and takes the faster. The timing is
remembered per CPU model, kernel caps, network, batch and threads (model/formchoice.py, the cache the server's
int8/f32 choice uses), so every run of one recipe on one machine trains the same way.

The weights stay fp32 either way (autocast computes convolutions and dense layers in bf16, batch norm and the
loss in fp32); the replay in docs/performance.md measured what that does to accuracy.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from ferstream.model.formchoice import choose

from .machine import PRECISIONS, cpu_has_bf16

# Steps timed per precision after one untimed step (oneDNN builds its kernels on the first): three steps of
# vgg x0.5 at batch 128 took 2.6 s in fp32 and 1.4 s in bf16 on the 2-core EPYC of 2026-12-07.
TIMED_STEPS = 3


def autocast_dtype(precision: str, network: torch.nn.Module, batch_size: int,
                   device: torch.device) -> torch.dtype | None:
    """The dtype to autocast network's training steps to (torch.bfloat16), or None for fp32.

    precision: "fp32", "bf16", or "auto" (bf16 on CUDA; on a CPU with native bf16 the faster of the two for
    network at batch_size, timed once per machine; fp32 on other CPUs). ValueError for "bf16" on a CPU
    without AVX512-BF16/AMX-BF16 (emulated, far slower) and for an unknown name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16
    if precision == "bf16":
        if not cpu_has_bf16():
            raise ValueError("--precision bf16: this CPU has no AVX512-BF16 or AMX-BF16; give --precision fp32")
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_bf16() and faster_on_this_cpu(network, batch_size) == "bf16" else None


def faster_on_this_cpu(network: torch.nn.Module, batch_size: int) -> str:
    """"fp32" or "bf16": which trains network faster at batch_size on this CPU, remembered after the first timing."""
    shapes = [tuple(parameter.shape) for parameter in network.parameters()]
    setting = (f"training step, {shapes}, batch {batch_size}, {torch.get_num_threads()} threads, "
               f"torch {torch.__version__}")
    forms = {"fp32": [], "bf16": []}
    return choose(forms, lambda name: ms_per_image(network, batch_size, name == "bf16"), setting).name


def ms_per_image(network: torch.nn.Module, batch_size: int, bf16: bool) -> float:
    """Milliseconds per image of a training step (forward, loss, backward, SGD) of a copy of network on random
    48x48 faces; network, its batch norm statistics and the random generators the run draws from stay as they were."""
    with torch.random.fork_rng():
        probe = copy.deepcopy(network).train()
        optimizer = torch.optim.SGD(probe.parameters(), lr=0.0)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, 1, 48, 48, generator=generator).contiguous(memory_format=torch.channels_last)
        target = torch.randint(0, 7, (batch_size,), generator=generator)
        started = 0.0
        for step in range(1 + TIMED_STEPS):
            if step == 1:
                started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(probe(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) * 1000 / (TIMED_STEPS * batch_size)

"""--precision: which precision a run trains in (training/precision.py), on the CPU the tests run on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ferstream.model.architectures import ArchSpec, build_model
from ferstream.model.formchoice import cache_dir
from ferstream.training.machine import cpu_has_bf16
from ferstream.training.precision import autocast_dtype, ms_per_image

CPU = torch.device("cpu")


@pytest.fixture
def network() -> torch.nn.Module:
    return build_model(ArchSpec(width=0.125)).to(memory_format=torch.channels_last)


def test_timing_a_step_leaves_the_network_and_the_random_draws_as_they_were(network: torch.nn.Module) -> None:
    weights = {name: value.clone() for name, value in network.state_dict().items()}
    torch.manual_seed(5)
    before = torch.get_rng_state()
    assert ms_per_image(network, 16, bf16=False) > 0
    assert torch.equal(torch.get_rng_state(), before)  # the run draws what it would have drawn without the timing
    for name, value in network.state_dict().items():
        assert torch.equal(value, weights[name]), name  # batch norm statistics included


def test_auto_is_fp32_without_native_bf16_and_else_the_faster_remembered(
        network: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path))
    chosen = autocast_dtype("auto", network, 16, CPU)
    if not cpu_has_bf16():
        assert chosen is None and not cache_dir().exists()  # nothing timed: emulated bf16 is never the faster
        return
    [remembered] = cache_dir().glob("*.json")
    timing = remembered.read_text()
    costs = json.loads(timing)["costs"]  # ms per image of each precision
    assert chosen is (torch.bfloat16 if costs["bf16"] < costs["fp32"] else None)
    # The second run of the same network on this machine reads the choice instead of timing again.
    assert autocast_dtype("auto", network, 16, CPU) == chosen
    assert remembered.read_text() == timing and len(list(cache_dir().glob("*.json"))) == 1
    # Another batch size is another setting, timed on its own.
    autocast_dtype("auto", network, 8, CPU)
    assert len(list(cache_dir().glob("*.json"))) == 2


def test_explicit_precisions_and_refusals(network: torch.nn.Module) -> None:
    assert autocast_dtype("fp32", network, 16, CPU) is None
    if cpu_has_bf16():
        assert autocast_dtype("bf16", network, 16, CPU) is torch.bfloat16
    else:
        with pytest.raises(ValueError, match="give --precision fp32"):
            autocast_dtype("bf16", network, 16, CPU)
    with pytest.raises(ValueError, match="must be one of auto, fp32, bf16"):
        autocast_dtype("fp16", network, 16, CPU)

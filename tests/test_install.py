"""README's two commands install CPU packages only: `make install` (the serving install) and the packages
`make test` adds (the training extra and the test tools, PyTorch's CPU build), each resolved by pip's own
dry run (`--dry-run --report`) of the Makefile's very commands, against the sources pip is configured with
here (PyPI, and PyTorch's CPU index when it is reachable)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What PyTorch's CUDA build pulls in: NVIDIA's CUDA libraries and Triton (a GPU compiler).
CUDA_PACKAGE = re.compile(r"^(nvidia-.*|triton)$")
# pip's words when no index answers at all (no network, no mirror).
UNREACHABLE = ("NewConnectionError", "Name or service not known", "Temporary failure in name resolution",
               "Network is unreachable", "Connection refused")


def planned_installs(target: str) -> dict[str, str]:
    """{package name: version} that `make TARGET` would install into an empty environment: the Makefile's
    pip commands run with --dry-run --ignore-installed --report into this Python's environment (which has
    pip, so no new virtual environment is made). Skips when no package index is reachable."""
    flags = "--dry-run --ignore-installed --quiet --report -"
    result = subprocess.run(["make", "-s", "--no-print-directory", target, f"VENV={sys.prefix}",
                             f"PIP_FLAGS={flags}"], cwd=REPO, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "PIP_PROGRESS_BAR": "off"})
    if result.returncode != 0:
        if any(word in result.stderr for word in UNREACHABLE) and "No matching distribution" in result.stderr:
            pytest.skip(f"no package index is reachable, so pip cannot resolve `make {target}`")
        pytest.fail(f"make {target} (dry run) failed:\n{result.stderr[-4000:]}")
    decoder, text, position, installs = json.JSONDecoder(), result.stdout, 0, {}
    while (position := text.find("{", position)) != -1:  # one report per pip command
        report, position = decoder.raw_decode(text, position)
        installs |= {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    assert installs, f"make {target} printed no pip report:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return installs


@pytest.mark.slow
def test_the_serving_install_holds_neither_pytorch_nor_cuda() -> None:
    installs = planned_installs("install")
    assert "ferstream" in installs and "openvino" in installs and "onnxruntime" in installs
    assert "torch" not in installs
    assert not [name for name in installs if CUDA_PACKAGE.match(name)]


@pytest.mark.slow
def test_what_the_tests_need_comes_with_pytorch_for_the_cpu() -> None:
    installs = planned_installs("install-dev")
    assert installs.get("torch", "").startswith("2.13.0") and "pytest" in installs and "playwright" in installs
    assert not [name for name in installs if CUDA_PACKAGE.match(name)], installs

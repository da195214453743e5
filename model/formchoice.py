"""Which form of a model (int8 or f32 file) a machine serves, and which precision fer-train trains in there
(training/precision.py): timed once per machine, then remembered.

Serving the faster form is measured, not guessed from the CPU's name (runtime.choose_form explains why),
but a timing taken while the machine is busy can come out either way: two processes of one machine (a
server and fer-annotate, or two replicas) could then serve different forms and give one photo two
answers. So the first load on a machine times the forms and writes its choice to the cache; every later
load of the same files with the same runtime and threads on a CPU of the same model, under the same
kernel caps (KERNEL_CAPS), reads it back. Delete the cache folder (`forms/` in $FER_CACHE_DIR, else
~/.cache/ferstream) to time them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

Form = TypeVar("Form")


def cache_dir() -> Path:
    """Where choices are remembered: $FER_CACHE_DIR/forms, else ~/.cache/ferstream/forms."""
    root = Path(os.environ["FER_CACHE_DIR"]) if "FER_CACHE_DIR" in os.environ else Path.home() / ".cache" / "ferstream"
    return root / "forms"


# The variables that cap the instruction sets each library's kernels may use, read when the library loads:
# with ONEDNN_MAX_CPU_ISA=AVX2 OPENCV_CPU_DISABLE=AVX512F,AVX512-SKX ATEN_CPU_CAPABILITY=avx2 a CPU with
# AVX-512 runs the kernels a CPU with AVX2 alone runs (OpenVINO and PyTorch through oneDNN, OpenCV's own
# dispatch; ONNX Runtime has no such switch). Under a cap the int8 form runs 1.6x slower here (0.89 against
# 0.54 ms per face with mirrored views, docs/performance.md), so a choice is remembered per cap as well.
KERNEL_CAPS = ("ONEDNN_MAX_CPU_ISA", "OPENCV_CPU_DISABLE", "ATEN_CPU_CAPABILITY")


def kernel_caps(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The KERNEL_CAPS set in environ (default: os.environ), name -> value."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in KERNEL_CAPS if environ.get(name)}


def cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (Linux /proc/cpuinfo), else what platform reports."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return f"{fields.get('model name', '?')} {fields.get('flags', fields.get('Features', ''))}"


def file_digest(paths: Sequence[Path]) -> str:
    """sha256 over the bytes of paths, in order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Choice:
    """A form chosen by name, with each timed form's ms per face, and whether it was read from the cache."""

    name: str
    costs: dict[str, float]
    remembered: bool


def choose(forms: dict[str, Sequence[Path]], time_form: Callable[[str], float], setting: str) -> Choice:
    """The fastest of forms ({name: its files}) on this machine: read from the cache when a choice among the
    same files, with the same setting (runtime, threads, ...), was made on a CPU of this model under the same
    kernel caps; else each form timed by time_form(name) (ms per face) and the choice written for the next
    load. A cache that cannot be read or written only costs the timing."""
    key = hashlib.sha256(json.dumps([cpu_identity(), kernel_caps(), setting, sorted(
        (name, file_digest(paths)) for name, paths in forms.items())]).encode()).hexdigest()
    path = cache_dir() / f"{key}.json"
    remembered = read_choice(path, forms)
    if remembered is not None:
        return remembered
    costs = {name: time_form(name) for name in forms}
    choice = Choice(min(costs, key=costs.get), costs, False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"name": choice.name, "costs": costs}))
        try:
            # A link never overwrites: when two processes time the forms at once, the first to write wins
            # and the other takes its choice, so both serve the same form.
            os.link(temporary, path)
        except FileExistsError:
            choice = read_choice(path, forms) or choice
        finally:
            temporary.unlink(missing_ok=True)
    except OSError:
        pass
    return choice


def read_choice(path: Path, forms: dict[str, Sequence[Path]]) -> Choice | None:
    """The choice remembered at path when it is among forms, else None."""
    try:
        remembered = json.loads(path.read_text())
        if remembered["name"] in forms and set(remembered["costs"]) == set(forms):
            return Choice(remembered["name"], remembered["costs"], True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None

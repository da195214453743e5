"""What every bench command prints: a Markdown table or one JSON document, and with --markdown-out the
same table as a section of a Markdown file (docs/performance.md), replaced in place when the command runs again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ferstream.model.formchoice import kernel_caps

# The vector instruction sets our runtimes choose kernels by, as /proc/cpuinfo's flags name them: OpenVINO's
# int8 kernels use VNNI where present, and its bf16 and AMX paths need the last two.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx_vnni": "AVX-VNNI",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
}
# The lines that open and close a command's section in a --markdown-out file; the command line (without
# --markdown-out) names the section, so running the same command again replaces it.
SECTION_BEGIN = "<!-- fer-bench begin: {key} -->"
SECTION_END = "<!-- fer-bench end: {key} -->"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The CPU_FEATURES the first CPU of /proc/cpuinfo (or the text given) lists, in CPU_FEATURES' order;
    empty where the flags cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [name for flag, name in CPU_FEATURES.items() if flag in flags]


def installed_version(distribution: str) -> str:
    """A distribution's installed version, or "not installed" (torch is optional for serving)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> dict[str, Any]:
    """CPU, cores, OS and library versions (the classifier runtimes included), for every report."""
    import cv2
    import numpy

    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "cpu_features": cpu_features(),
        "kernel_caps": kernel_caps(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": installed_version("torch"),
        "openvino": installed_version("openvino"),
        "onnxruntime": installed_version("onnxruntime"),
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }


def machine_line(machine: dict[str, Any]) -> str:
    """machine_description as one line."""
    features = ", ".join(machine["cpu_features"]) or "no AVX2"
    if caps := machine.get("kernel_caps"):
        features += "; kernels capped by " + " ".join(f"{name}={value}" for name, value in caps.items())
    return (f"{machine['cpu']}, {machine['logical_cores']} logical cores ({features}), {machine['os']}; "
            f"Python {machine['python']}, "
            f"OpenVINO {machine['openvino']}, ONNX Runtime {machine['onnxruntime']}, torch {machine['torch']}, "
            f"OpenCV {machine['opencv']}")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 decimals below 10 and 1 above, None shows as –."""
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def report_text(command_line: str, machine: dict[str, Any], table: str) -> str:
    """The Markdown report: the command line and the machine on one line, then the table."""
    return f"`{command_line}` on {machine_line(machine)}\n\n{table}"


def print_report(command_line: str, result: Any, table: str, as_json: bool, markdown_out: Path | None = None,
                 section_key: str | None = None) -> None:
    """The result as JSON (command, machine, result) or as the command line, machine and table; with
    markdown_out, also the Markdown report as the section named section_key (default: the command line) of
    that file (write_section)."""
    machine = machine_description()
    if as_json:
        document = {"command": command_line, "machine": machine, "result": dataclasses.asdict(result)}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report_text(command_line, machine, table))
    sys.stdout.flush()
    if markdown_out is not None:
        measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(markdown_out, section_key or command_line,
                      f"{report_text(command_line, machine, table)}\n\nMeasured {measured}.")


def write_section(path: Path, key: str, text: str) -> None:
    """Puts text into the Markdown file at path between the SECTION_BEGIN and SECTION_END lines of key:
    replaces what was there, else appends the section at the end (creating the file if needed). Everything
    outside the section is kept as it was. The file is replaced in one rename, so a reader or an interrupted
    run never sees it half written. Raises ValueError when the file opens key's section without closing it."""
    begin, end = SECTION_BEGIN.format(key=key), SECTION_END.format(key=key)
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    section = f"{begin}\n{text.rstrip()}\n{end}"
    lines = old.splitlines()
    if begin in lines:
        start = lines.index(begin)
        if end not in lines[start:]:
            raise ValueError(f"{path}: the section of {key!r} has no closing line {end!r}")
        stop = lines.index(end, start)
        new = "\n".join([*lines[:start], section, *lines[stop + 1:]]) + "\n"
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as temporary:
        temporary.write(new)
    # NamedTemporaryFile makes the file private (0600); keep the mode the file had, else a normal one.
    os.chmod(temporary.name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(temporary.name, path)

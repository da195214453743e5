"""What every bench command prints: a Markdown table (pastes into the README) or one JSON document."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any


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
    return (f"{machine['cpu']}, {machine['logical_cores']} logical cores, {machine['os']}; Python {machine['python']}, "
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


def print_report(command_line: str, result: Any, table: str, as_json: bool) -> None:
    """The result as JSON (command, machine, result) or as the command line, machine and table."""
    machine = machine_description()
    if as_json:
        document = {"command": command_line, "machine": machine, "result": dataclasses.asdict(result)}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"`{command_line}` on {machine_line(machine)}\n")
        print(table)
    sys.stdout.flush()

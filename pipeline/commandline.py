"""Conventions every fer-* command shares: `--version`, and one line on stderr for an error.

Every command adds `--version` with `add_version_argument(parser)`, so that they all print the same thing:
`fer-annotate 0.1.0 (ferstream, Python 3.11.7)`. This module imports nothing heavy, so `--version` and
`--help` answer before torch or OpenCV load.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from typing import TypeVar

PACKAGE = "ferstream"
# Exit codes of every command: 0 done, 1 the work failed (bad input file, server error), 2 bad usage
# (argparse's own code), 130 interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Number = TypeVar("Number", int, float)


def package_version() -> str:
    """The installed ferstream version (from pyproject.toml via the package metadata); "unknown" when the
    sources run without being installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_string(prog: str) -> str:
    """What `PROG --version` prints, e.g. "fer-annotate 0.1.0 (ferstream, Python 3.11.7)"."""
    return f"{prog} {package_version()} ({PACKAGE}, Python {platform.python_version()})"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--version` to parser: prints version_string(parser.prog) on stdout and exits 0."""
    parser.add_argument("--version", action="version", version=version_string(parser.prog),
                        help="print the version and exit")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def number_type(convert: Callable[[str], Number], accept: Callable[[Number], bool],
                what: str) -> Callable[[str], Number]:
    """An argparse type: the text as convert (int or float) reads it, when accept takes the value;
    otherwise argparse.ArgumentTypeError "'TEXT' is not WHAT" (e.g. what="a number between 0 and 1")."""

    def parse(text: str) -> Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def error_line(prog: str, message: str) -> str:
    """"PROG: error: MESSAGE" on one line (message's line breaks and runs of spaces become single spaces),
    the form argparse uses for usage errors."""
    return f"{prog}: error: {' '.join(message.split())}"


def print_error(prog: str, message: str) -> None:
    """error_line(prog, message) on stderr."""
    print(error_line(prog, message), file=sys.stderr)

"""Conventions every fer-* command shares: `--version`, one line on stderr for an error, a quiet end when
the reader of its output goes away.

Every command adds `--version` with `add_version_argument(parser)`, so that they all print the same thing:
`fer-annotate 0.1.0 (ferstream, Python 3.11.7)`, builds its parser as a `CommandParser`, whose usage errors
are one line, and reads its numbers with the argument types below (positive_int, seconds, port_number...).
Installed commands start through `run_command` (ferstream.commands), which answers
`--version` before the command's module (and torch or OpenCV with it) is imported and ends quietly on a
broken pipe (`fer-models list --json | head -1`). This module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import IO, NoReturn, TypeVar

PACKAGE = "ferstream"
# Exit codes of every command: 0 done, 1 the work failed (bad input file, server error), 2 bad usage
# (argparse's own code), 130 interrupted by Ctrl-C (128 + SIGINT, as shells report it), 141 the reader of
# stdout went away (128 + SIGPIPE, what a C tool killed by the signal reports).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

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


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, "PROG: error: MESSAGE (see --help)",
    and exit code EXIT_USAGE, instead of argparse's usage block. Sub-command parsers are CommandParsers too."""

    def error(self, message: str) -> NoReturn:
        """Prints the one line and exits with EXIT_USAGE."""
        print_error(self.prog, f"{message} (see --help)")
        sys.exit(EXIT_USAGE)

    def print_help(self, file: IO[str] | None = None) -> None:
        """argparse's help; a reader that went away (`fer-train --help | head -1`) is left to run_command, which
        ends quietly. Older Python 3.11 releases (Debian 12's 3.11.2) let the BrokenPipeError out of
        argparse, where a command's own `except OSError` would report it as a failure; later ones drop it."""
        try:
            super().print_help(file)
        except BrokenPipeError:
            pass


def asks_for_version(argv: Sequence[str]) -> bool:
    """Whether argv (without the program name) asks for the version: `--version` before any `--` (argparse
    prints the version and exits as soon as it meets the flag)."""
    for argument in argv:
        if argument == "--":
            return False
        if argument == "--version":
            return True
    return False


def run_command(prog: str, module: str, argv: Sequence[str] | None = None) -> int:
    """Runs `module.main(argv)` as the command prog and returns its exit code.

    `--version` is answered here, before module is imported (torch takes seconds to load). A broken pipe
    on stdout (the reader quit, as `head` does) ends the command quietly with EXIT_BROKEN_PIPE instead of a
    traceback; stdout then points at /dev/null so that Python's own flush at exit does not fail again.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if asks_for_version(arguments):
        print(version_string(prog))
        return EXIT_OK
    try:
        try:
            return importlib.import_module(module).main(arguments)
        finally:  # also when argparse exits after --help: what is still buffered may meet the broken pipe
            sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


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


# The argparse types of every command's numbers (NaN and infinities fail each float type).
positive_int = number_type(int, lambda value: value >= 1, "a whole number of at least 1")
non_negative_int = number_type(int, lambda value: value >= 0, "a whole number of at least 0")
positive_float = number_type(float, lambda value: 0 < value < math.inf, "a positive number")
non_negative_float = number_type(float, lambda value: 0 <= value < math.inf, "a finite number of at least 0")
seconds = number_type(float, lambda value: 0 < value < math.inf, "a positive number of seconds")
fraction = number_type(float, lambda value: 0 <= value <= 1, "a number between 0 and 1")
port_number = number_type(int, lambda value: 0 <= value <= 65535, "a port number, 0-65535 (0 picks a free one)")


def whole_number_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number within low-high, both included."""
    return number_type(int, lambda value: low <= value <= high, f"a whole number between {low} and {high}")


def number_between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number within low-high, both included."""
    return number_type(float, lambda value: low <= value <= high, f"a number between {low:g} and {high:g}")


def positive_int_list(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers of at least 1, e.g. "1,8,32" -> [1, 8, 32]."""
    items = [item for item in text.split(",") if item.strip()]
    if not items or any(not item.strip().isdigit() or int(item) < 1 for item in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated whole numbers of at least 1")
    return [int(item) for item in items]


def error_line(prog: str, message: str) -> str:
    """"PROG: error: MESSAGE" on one line (message's line breaks and runs of spaces become single spaces),
    the form argparse uses for usage errors."""
    return f"{prog}: error: {' '.join(message.split())}"


def print_error(prog: str, message: str) -> None:
    """error_line(prog, message) on stderr."""
    print(error_line(prog, message), file=sys.stderr)

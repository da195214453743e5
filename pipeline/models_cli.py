"""fer-models: where the detector weights are (`list`) and fetching them for users online (`download`).

YuNet comes with the package (weights.SHIPPED_DIR); `download` fetches the TensorFlow SSD.

The server never downloads; this is the only command that touches the network.
Exit codes: 0 done, 1 a download failed, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

from . import weights
from ferstream.commandline import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CommandParser, add_version_argument,
                                   print_error)
from .settings import MODELS_DIR_HELP, default_models_dir

PROG = "fer-models"
# Seconds to wait for each upstream server before giving up on a download.
DOWNLOAD_TIMEOUT_S = 60


def list_weights(models_dir: Path, as_json: bool) -> int:
    """Prints every weight file with its state ("ok", "missing", "sha256 mismatch") and where it was found:
    a table, or with as_json one JSON document {"models_dir", "searched", "weights": [...]}."""
    folders = weights.search_folders(models_dir)
    found = [weights.locate(weight, folders) for weight in weights.ALL_WEIGHTS]
    if as_json:
        print(json.dumps({
            "models_dir": str(models_dir),
            "searched": [str(folder) for folder in folders],
            "weights": [{"name": item.weight.name, "state": item.state,
                         "path": None if item.path is None else str(item.path)} for item in found],
        }, indent=2))
        return EXIT_OK
    print(f"models dir: {models_dir}")
    print("searched: " + ", ".join(str(folder) for folder in folders))
    for item in found:
        where = item.path if item.path is not None else "-"
        print(f"{item.weight.name:42} {item.state:16} {where}")
    return EXIT_OK


def download(weight: weights.WeightFile, models_dir: Path) -> None:
    """Fetches one file into models_dir, keeping it only if its sha256 matches the pinned one.

    OSError (network, disk) or ValueError (checksum) on failure; nothing is left behind then.
    """
    target = models_dir / weight.name
    temporary = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(weight.url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(temporary, "wb") as stream:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                stream.write(block)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != weight.sha256:
        temporary.unlink()
        raise ValueError(f"{weight.url}: sha256 {digest.hexdigest()} is not the expected {weight.sha256}")
    temporary.replace(target)


def download_weights(models_dir: Path) -> int:
    """Downloads every downloadable weight that neither models_dir nor the package holds intact; one line per
    file, one error line per failure."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print_error(PROG, f"{models_dir}: cannot create it ({error.strerror})")
        return EXIT_FAILED
    failures = 0
    for weight in weights.DOWNLOADABLE:
        found = weights.locate(weight, [models_dir, weights.SHIPPED_DIR])
        if found.ok:
            print(f"{weight.name}: already present ({found.path.parent})")
            continue
        try:
            download(weight, models_dir)
            print(f"{weight.name}: downloaded")
        except ValueError as error:
            failures += 1
            print_error(PROG, f"{weight.name}: {error}")
        except OSError as error:
            failures += 1
            reason = getattr(error, "reason", None) or error.strerror or error  # URLError wraps network errors
            print_error(PROG, f"{weight.name}: cannot download {weight.url}: {reason}")
    return EXIT_FAILED if failures else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """fer-models' command line: `list` and `download`, both with --models-dir."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    parser = CommandParser(prog=PROG, description="Face-detector weights: list or download them.",
                           epilog="Exit codes: 0 done, 1 a download failed, 2 bad usage.")
    add_version_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")
    listing = commands.add_parser("list", parents=[common],
                                  help="show every weight file, where it was found and whether its sha256 matches",
                                  description="Every weight file, where it was found and whether its sha256 "
                                              "matches the pinned one.")
    listing.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    commands.add_parser("download", parents=[common],
                        help="fetch missing weights from their upstream URLs (sha256-checked)",
                        description="Fetch the missing TensorFlow SSD weights (and YuNet, should the "
                                    "package's copy be missing) from their upstream URLs into --models-dir, "
                                    "keeping each only if its sha256 matches.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs fer-models; returns the exit code."""
    args = build_parser().parse_args(argv)
    models_dir = args.models_dir or default_models_dir()
    try:
        if args.command == "list":
            return list_weights(models_dir, args.json)
        return download_weights(models_dir)
    except KeyboardInterrupt:
        print_error(PROG, "interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

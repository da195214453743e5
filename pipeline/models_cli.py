"""fer-models: where the detector weights are (`list`) and fetching them for users online (`download`).

The server never downloads; this is the only command that touches the network.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from pathlib import Path

from . import weights
from .settings import default_models_dir


def list_weights(models_dir: Path) -> int:
    folders = weights.search_folders(models_dir)
    print(f"models dir: {models_dir}")
    print("searched: " + ", ".join(str(folder) for folder in folders))
    for weight in weights.ALL_WEIGHTS:
        found = weights.locate(weight, folders)
        where = found.path if found.path is not None else "-"
        print(f"{weight.name:42} {found.state:16} {where}")
    return 0


def download(weight: weights.WeightFile, models_dir: Path) -> None:
    """Fetches one file into models_dir, keeping it only if its sha256 matches the pinned one."""
    target = models_dir / weight.name
    temporary = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(weight.url, timeout=60) as response, open(temporary, "wb") as stream:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            stream.write(block)
    if digest.hexdigest() != weight.sha256:
        temporary.unlink()
        raise ValueError(f"{weight.url}: sha256 {digest.hexdigest()} is not the expected {weight.sha256}")
    temporary.replace(target)


def download_weights(models_dir: Path) -> int:
    models_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for weight in weights.DOWNLOADABLE:
        if weights.locate(weight, [models_dir]).ok:
            print(f"{weight.name}: already present")
            continue
        try:
            download(weight, models_dir)
            print(f"{weight.name}: downloaded")
        except (OSError, ValueError) as error:
            failures += 1
            print(f"fer-models: {weight.name}: {error}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, default=None,
                        help="folder of the weights (default: $FER_MODELS_DIR or ~/.cache/ferstream/models)")
    parser = argparse.ArgumentParser(prog="fer-models", description="Face-detector weights: list or download them.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common],
                        help="show every weight file, where it was found and whether its sha256 matches")
    commands.add_parser("download", parents=[common],
                        help="fetch missing weights from their upstream URLs (sha256-checked)")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or default_models_dir()
    if args.command == "list":
        return list_weights(models_dir)
    return download_weights(models_dir)


if __name__ == "__main__":
    sys.exit(main())

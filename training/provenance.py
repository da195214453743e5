"""Provenance: the chain of commands that produced a model file, recorded as they were executed.

Every fer-train run appends one record to the chain it inherits (from the --init model file, or from
the checkpoint it resumes) and stores the chain in each file it writes, as meta["provenance"]; no file
is edited after it is written. A record holds:

  argv     the arguments exactly as given, so `fer-train ARGV...` replays the command
  command  the same as one shell line, "fer-train --data ... --out ..."
  cwd      the folder it ran in (relative paths in argv are relative to it)
  started  when the command started, ISO 8601 UTC
  ended    when the file holding this record was written (for final.pt and the last last.pt: the
           command's end)
  epochs   [first, last] 1-based epochs this command had trained when the file was written
  machine  machine.describe_machine(): CPU model, cores, relevant CPU flags, torch version, GPU
  inputs   {"data", "votes", "init", "teacher"}: each {"path" as given, "sha256", "bytes"} (data and
           votes: "files" too, the sha256 over every file's relative name and bytes)
  recipe   with --config only: the recipe file's {"path" as given, "sha256", "text"} (training/recipe.py),
           so the command replays even where the file has changed or gone since

Model files written before records existed carry only meta["training_command"], the commands joined
by " && "; their chains become records with "command" alone.

The shipped model (model/shipped/ferstream-emotion.pt) was trained before recipe files existed; its
meta["recipes"] lists the files in training/recipes that replay its chain, one {"path", "sha256"} per
record in order (`make train` runs them).

`python -m ferstream.training.provenance MODEL` prints a model file's chain, one command a line (--recipes:
the recipe file behind each).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from .data.detect import cache_dir, cache_key

CHUNK = 1 << 20  # bytes read at a time while hashing


def now() -> str:
    """The current UTC time, ISO 8601 to the second, e.g. "2026-11-30T21:08:35+00:00"."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike) -> dict[str, Any]:
    """{"path": path as given, "sha256": hex digest of the file's bytes, "bytes": its size}."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return {"path": str(path), "sha256": digest.hexdigest(), "bytes": Path(path).stat().st_size}


def data_sha256(path: str | os.PathLike) -> dict[str, Any]:
    """{"path", "sha256", "files", "bytes"} of a dataset file or folder (every file under it).

    The digest covers each file's name relative to path (sorted) and its bytes, so renaming, adding or
    changing any file changes it. Hashing FER2013's 35,887 JPEGs (61 MB) takes seconds, so the result is
    cached beside the decoded datasets, keyed by every file's size and modification time.
    """
    root = Path(path)
    cached = cache_dir() / f"{cache_key(root, 'sha256')}.sha256.json"
    if cached.is_file():
        return {"path": str(path), **json.loads(cached.read_text())}
    files = [root] if root.is_file() else sorted(
        (Path(folder) / name for folder, _, names in os.walk(root) for name in names),
        key=lambda file: file.relative_to(root).as_posix())
    digest, total = hashlib.sha256(), 0
    for file in files:
        name = file.name if file == root else file.relative_to(root).as_posix()
        size = file.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with open(file, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        total += size
    result = {"sha256": digest.hexdigest(), "files": len(files), "bytes": total}
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(".tmp")
    temporary.write_text(json.dumps(result))
    temporary.replace(cached)
    return {"path": str(path), **result}


def command_line(argv: list[str]) -> str:
    """argv as the shell line that runs it: "fer-train " + the arguments, quoted where needed."""
    return shlex.join(["fer-train", *argv])


def start_record(argv: list[str], machine: dict[str, Any], inputs: dict[str, Any],
                 recipe: dict[str, str] | None = None) -> dict[str, Any]:
    """A new record for the command now starting (see the module docstring); "ended" and "epochs" come later.

    recipe: the --config file's {"path", "sha256", "text"} (training/recipe.py), None without one.
    """
    record = {"argv": list(argv), "command": command_line(argv), "cwd": os.getcwd(), "started": now(),
              "machine": machine, "inputs": inputs}
    return {**record, "recipe": recipe} if recipe else record


def close_record(record: dict[str, Any], first_epoch: int, last_epoch: int) -> dict[str, Any]:
    """A copy of record stamped for a file written now, after 1-based epochs first_epoch..last_epoch."""
    return {**record, "ended": now(), "epochs": [first_epoch, last_epoch]}


def chain_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The provenance chain of a model file's meta; legacy files' " && "-joined commands as bare records."""
    if meta.get("provenance"):
        return [dict(record) for record in meta["provenance"]]
    command = meta.get("training_command", "")
    return [{"command": part.strip()} for part in command.split(" && ") if part.strip()]


def chain_recipes(meta: dict[str, Any]) -> list[dict[str, str] | None]:
    """The recipe file behind each record of a model file's chain, in order: the record's own "recipe"
    (--config), else the shipped model's meta["recipes"] entry for it ({"path", "sha256"}), else None."""
    listed = meta.get("recipes") or []
    return [record.get("recipe") or (listed[index] if index < len(listed) else None)
            for index, record in enumerate(chain_of(meta))]


def chain_text(chain: list[dict[str, Any]]) -> str:
    """The chain as one shell line, commands joined by " && " (meta["training_command"], GetModelInfo)."""
    return " && ".join(record["command"] for record in chain)


def main(argv: list[str] | None = None) -> int:
    """Print a model file's chain of commands, one a line (exit 2 with one line for a bad file)."""
    from ferstream.model.modelfile import read_payload  # torch only once asked

    parser = argparse.ArgumentParser(prog="python -m ferstream.training.provenance",
                                     description="Print the chain of commands that produced a model file.")
    parser.add_argument("model", help="a model file written by fer-train (any of best.pt, final.pt, last.pt)")
    parser.add_argument("--json", action="store_true", help="print the whole chain as JSON instead")
    parser.add_argument("--recipes", action="store_true",
                        help="print each command's recipe file instead (\"-\" for a command without one)")
    args = parser.parse_args(argv)
    try:
        meta = read_payload(args.model)["meta"]
    except (FileNotFoundError, ValueError) as error:
        print(f"provenance: {error}", file=sys.stderr)
        return 2
    chain = chain_of(meta)
    if args.recipes:
        print("\n".join(recipe["path"] if recipe else "-" for recipe in chain_recipes(meta)))
    else:
        print(json.dumps(chain, indent=1) if args.json else "\n".join(record["command"] for record in chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())

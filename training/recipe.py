"""Recipe files: a TOML file that sets fer-train's options, as nanoGPT's config files and timm's YAML do.

`fer-train --config training/recipes/light.toml` reads every option from the file; flags given on the
command line as well override the file's values. A key is an option's name with underscores where the
flag has dashes (`erase_probability = 0.25` for `--erase-probability 0.25`), a value is TOML's own type:
a number for numeric options, true/false for on/off options (`standardize = false` for
`--no-standardize`), a string for paths and lists. `resume = true` and `stop_after = N` are keys too.
Relative paths are relative to the folder fer-train runs in, as on the command line; `data` left out
means fer-train's default ($FER_DATA_DIR/datasets/fer2013).

A key fer-train does not know, a value of the wrong type or a file that is not TOML is one error line
naming the file (exit 2). Each model file records the recipe it was trained with, its path, sha256 and
text, in its chain of commands (training/provenance.py), so the command replays even where the file has
changed since. training/recipes/ holds the recipes of the shipped model's chain (README's `make train`).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RecipeError(ValueError):
    """A recipe file that cannot be used: unreadable, not TOML, an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Recipe:
    """A recipe file as read: path as given, its text, and its settings {option name: value}."""

    path: str
    text: str
    settings: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Hex sha256 of the file's UTF-8 text."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def record(self) -> dict[str, str]:
        """What a model file's chain records about it: {"path", "sha256", "text"}."""
        return {"path": self.path, "sha256": self.sha256, "text": self.text}


def read_recipe(path: str, types: dict[str, type]) -> Recipe:
    """The recipe at path, each value checked against types {option name: bool, int, float or str}.

    An int is accepted for a float option (and stored as a float). RecipeError, one line naming the
    file, for an unreadable file, bad TOML, a key missing from types or a value of another type.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read the recipe ({error.strerror or error})"
                          if isinstance(error, OSError) else f"{path}: the recipe is not UTF-8 text") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not a TOML file ({error})") from None
    settings = {}
    for key, value in table.items():
        if key not in types:
            hint = (f"; keys are options' names with underscores: {key.replace('-', '_')}"
                    if key.replace("-", "_") in types else "")
            raise RecipeError(f"{path}: unknown key {key!r}{hint}")
        settings[key] = checked_value(path, key, value, types[key])
    return Recipe(path=str(path), text=text, settings=settings)


def checked_value(path: str, key: str, value: Any, kind: type) -> Any:
    """value as option key of type kind wants it; RecipeError when TOML gave another type."""
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    raise RecipeError(f"{path}: {key} must be {wanted}, got {value!r}")

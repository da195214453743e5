"""The layout's import rules (docs/architecture.md), read from the source: every module's imports are parsed
with ast, including those inside functions and `if TYPE_CHECKING:` blocks, and relative ones are resolved, so a
lazy import cannot slip past. pipeline/ is the frame path alone; the client never needs the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each top-level folder and the package it installs as (pyproject.toml's package-dir).
PACKAGES = {"pipeline": "ferstream.pipeline", "annotate": "ferstream.annotate", "client": "ferstream.client",
            "server": "ferstream.server", "model": "ferstream.model", "bench": "ferstream.bench",
            "training": "ferstream.training", "commandline": "ferstream.commandline"}

# What each package must never import: a module named here, or any module below it.
FORBIDDEN = {
    "ferstream.pipeline": ("ferstream.annotate", "ferstream.client", "ferstream.server", "ferstream.training",
                           "ferstream.bench", "grpc"),
    "ferstream.client": ("ferstream.server", "ferstream.training"),
    "ferstream.server": ("ferstream.annotate", "ferstream.client", "ferstream.training"),
    # Every command's plumbing: any part may use it, so it uses none (its usage.py reads the commands' parsers
    # by module name, at run time, for docs/usage.md).
    "ferstream.commandline": ("ferstream.model", "ferstream.pipeline", "ferstream.annotate", "ferstream.client",
                              "ferstream.server", "ferstream.training", "ferstream.bench", "ferstream.web", "grpc"),
    "ferstream.model": ("ferstream.pipeline", "ferstream.annotate", "ferstream.client", "ferstream.server",
                        "ferstream.training", "grpc"),
}


def module_name(path: Path, folder: Path, package: str) -> str:
    """The dotted name path installs as: client/session.py -> ferstream.client.session."""
    parts = path.relative_to(folder).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module the source imports, anywhere in it, as absolute dotted names (`from a import b` gives both
    a and a.b, since b may be a module). module: the source's own dotted name, to resolve relative imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(package: str, imported: set[str]) -> list[str]:
    """The imports among `imported` that FORBIDDEN rules out for package."""
    banned = FORBIDDEN.get(package, ())
    return sorted(name for name in imported for ban in banned if name == ban or name.startswith(ban + "."))


def package_modules(folder: str) -> list[Path]:
    """The .py files of one package folder (its subpackages included)."""
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_no_package_imports_what_the_layout_forbids(folder: str) -> None:
    package = PACKAGES[folder]
    broken = {}
    for path in package_modules(folder):
        name = module_name(path, ROOT / folder, package)
        imported = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        if bad := violations(package, imported):
            broken[str(path.relative_to(ROOT))] = bad
    assert not broken, f"imports the layout forbids: {broken}"


def test_pipeline_holds_the_frame_path_alone() -> None:
    """The offline tool's modules live in annotate/, not in the frame path."""
    names = {path.stem for path in package_modules("pipeline")}
    assert not names & {"annotate", "annotate_cli", "draw", "records", "timeline", "media", "commandline"}, names


def test_the_checker_finds_lazy_relative_and_type_checking_imports() -> None:
    """The rule check itself: each way a forbidden import can be written is caught."""
    source = '''
from typing import TYPE_CHECKING
from . import decode
if TYPE_CHECKING:
    from ferstream.client.library import EmotionClient

def later():
    import ferstream.server.app
    from ..annotate import draw
    from ..annotate.records import FaceRecord
'''
    imported = imports_of(source, "ferstream.pipeline.example")
    assert "ferstream.pipeline.decode" in imported
    assert violations("ferstream.pipeline", imported) == [
        "ferstream.annotate", "ferstream.annotate.draw", "ferstream.annotate.records",
        "ferstream.annotate.records.FaceRecord", "ferstream.client.library", "ferstream.client.library.EmotionClient",
        "ferstream.server.app"]
    assert violations("ferstream.client", imported) == ["ferstream.server.app"]

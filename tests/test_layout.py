"""The layout's import rules (docs/architecture.md), read from the source: every module's imports are parsed
with ast, including those inside functions and `if TYPE_CHECKING:` blocks, and relative ones are resolved, so a
lazy import cannot slip past. Every package imports only packages of the layers beneath its own (MAY_IMPORT);
pipeline/ is the frame path alone; neither the client nor the gateway needs the server; no package imports
api/'s modules (`ferstream` itself: analyze, the commands' entry points, fer-annotate's wiring)."""

from __future__ import annotations

import ast
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each top-level package folder and the package it installs as (pyproject.toml's package-dir).
PACKAGES = {"protos/ferstream/v1": "ferstream.v1", "auth": "ferstream.auth", "model": "ferstream.model",
            "pipeline": "ferstream.pipeline", "annotate": "ferstream.annotate", "server": "ferstream.server",
            "client": "ferstream.client", "web": "ferstream.web", "training": "ferstream.training",
            "bench": "ferstream.bench", "api": "ferstream", "commandline": "ferstream.commandline"}

# The diagram, as the ferstream packages each one may import (besides its own modules); any other is above
# it or beside it. ferstream.commandline sits below every package (command-line conventions only).
COMMANDLINE = "ferstream.commandline"
MAY_IMPORT = {
    "ferstream.v1": (),
    "ferstream.auth": (),
    COMMANDLINE: (),
    "ferstream.model": (),
    "ferstream.pipeline": ("ferstream.model", COMMANDLINE),
    "ferstream.annotate": ("ferstream.pipeline", "ferstream.model", COMMANDLINE),
    "ferstream.server": ("ferstream.pipeline", "ferstream.model", "ferstream.v1", "ferstream.auth", COMMANDLINE),
    "ferstream.client": ("ferstream.annotate", "ferstream.pipeline", "ferstream.model", "ferstream.v1", COMMANDLINE),
    "ferstream.web": ("ferstream.client", "ferstream.annotate", "ferstream.pipeline", "ferstream.model",
                      "ferstream.v1", "ferstream.auth", COMMANDLINE),
    "ferstream.training": ("ferstream.pipeline", "ferstream.model", COMMANDLINE),
    "ferstream.bench": ("ferstream.server", "ferstream.client", "ferstream.pipeline", "ferstream.model",
                        "ferstream.v1", COMMANDLINE),
    "ferstream": ("ferstream.annotate", "ferstream.client", "ferstream.pipeline", "ferstream.model", COMMANDLINE),
}
# Packages that never speak gRPC themselves: the frame path, the model, the offline tool, training, the
# shared rules and the in-process API.
NO_GRPC = ("ferstream.model", "ferstream.pipeline", "ferstream.annotate", "ferstream.training", "ferstream.auth",
           COMMANDLINE, "ferstream")
# api/'s modules, the top of the diagram: `ferstream.analyze`, the entry points, fer-annotate's wiring.
TOP_MODULES = ("ferstream.analyze", *sorted(f"ferstream.{path.stem}" for path in (ROOT / "api").glob("*.py")
                                            if path.stem != "__init__"))


def forbidden_for(package: str) -> tuple[str, ...]:
    """What package may not import: every other ferstream package that MAY_IMPORT does not give it (api/'s
    modules for `ferstream` itself, since every package's name starts with it), and grpc where NO_GRPC says."""
    banned = [name for name in MAY_IMPORT if name not in (package, "ferstream", *MAY_IMPORT[package])]
    if package != "ferstream":
        banned += TOP_MODULES
    if package in NO_GRPC:
        banned.append("grpc")
    return tuple(sorted(banned))


# What each package must never import: a module named here, or any module below it.
FORBIDDEN = {package: forbidden_for(package) for package in MAY_IMPORT}


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
    top = imports_of("from ferstream import analyze\nimport ferstream.commands\n", "ferstream.annotate.example")
    assert violations("ferstream.annotate", top) == ["ferstream.analyze", "ferstream.commands"]


def test_every_package_folder_has_its_rules() -> None:
    """A new package cannot slip past the rules: every top-level folder holding a Python package and every
    package pyproject.toml installs lies in a folder of PACKAGES, and every package has its layer."""
    covered = [ROOT / folder for folder in PACKAGES]
    # Hidden folders (.venv) and setuptools' build outputs hold copies, not packages of the source.
    folders = {path.relative_to(ROOT).parts[0] for path in ROOT.glob("*/**/__init__.py")
               if not path.relative_to(ROOT).parts[0].startswith(".")} - {"build", "dist"}
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    installed = setuptools["package-dir"]
    for folder in sorted(folders | set(installed.values())):
        path = ROOT / folder
        assert any(path == root or root in path.parents or path in root.parents for root in covered), \
            f"{folder}/ holds a package that tests/test_layout.py's PACKAGES does not list"
    for package in installed:
        assert any(package == name or package.startswith(name + ".") for name in PACKAGES.values()), package
    assert set(PACKAGES.values()) <= set(MAY_IMPORT) and set(FORBIDDEN) == set(MAY_IMPORT)


def test_the_layers_point_one_way() -> None:
    """The rules themselves draw no cycle (two packages allowed to import each other), so every import goes
    down the diagram, and nothing below api/ may import it."""
    try:
        order = list(TopologicalSorter(MAY_IMPORT).static_order())
    except CycleError as error:
        pytest.fail(f"the layers import each other: {error.args[1]}")
    assert order[-1] == "ferstream"
    assert all("ferstream.inprocess" in FORBIDDEN[package] and "ferstream.analyze" in FORBIDDEN[package]
               for package in MAY_IMPORT if package != "ferstream")

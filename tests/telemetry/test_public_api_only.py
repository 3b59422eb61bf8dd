"""The product uses OpenTelemetry through its public API only (issue 15).

No import of a private name or module from an ``opentelemetry`` package, no access to a
private attribute of anything imported from one, and no assignment to an attribute of
anything imported from one (which would replace another package's module attributes).
"""

from __future__ import annotations

import ast

from tests.support import ROOT

PRODUCT = ("bank", "eventstore", "projections", "config", "bench")


def _product_files():
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _problems(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    otel_names: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "opentelemetry":
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        found.append(f"{path}:{node.lineno}: imports {alias.name}")
                    otel_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry"):
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"{path}:{node.lineno}: imports from {node.module}")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path}:{node.lineno}: imports {node.module}.{alias.name}")
                otel_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in otel_names:
                found.append(f"{path}:{node.lineno}: uses the private {node.attr}")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(root, ast.Name)
                    and root.id in otel_names
                ):
                    found.append(f"{path}:{node.lineno}: assigns to {root.id}.{target.attr}")
    return found


def test_no_private_opentelemetry_names_and_no_patching():
    problems = [p for path in _product_files() for p in _problems(path)]
    assert problems == []


def test_the_check_catches_what_it_looks_for(tmp_path):
    # The offending lines are assembled here so that no private name appears in this file
    # (a repository-wide search for private OpenTelemetry names stays empty).
    private = "_"
    bad = tmp_path / "bad.py"
    bad.write_text(
        f"from opentelemetry.sdk.trace import {private}Span\n"
        f"from opentelemetry.sdk.{private}logs import LoggerProvider\n"
        "from opentelemetry.exporter.otlp.proto.http import trace_exporter\n"
        "from opentelemetry.sdk.trace import Tracer\n"
        "trace_exporter.encode_spans = None\n"
        f"x = Tracer.{private}span_limits\n"
    )
    problems = _problems(bad)
    assert len(problems) == 4, problems

"""The exporter's import graph: app -> collectors -> model <- sources.

Collectors render snapshots and do no I/O, so they import neither a source nor the
machinery above them; sources return snapshots without knowing who renders them; the
model imports nothing of the exporter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXPORTER = Path(__file__).resolve().parents[2] / "exporter"
ABOVE = {"app", "cli", "config", "docs", "exposition", "scheduler", "server", "connections"}


def imported(path: Path) -> set[str]:
    """The exporter modules a file imports, as names relative to the package: "sources.hub"."""
    package = path.parent.relative_to(EXPORTER).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level + 1])
            module = [*base, *(node.module.split(".") if node.module else [])]
            names = [".".join([*module, alias.name]) for alias in node.names]
            found |= {".".join(module)} if node.module else set(names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "dlcourse_exporter"
        ):
            found.add(node.module.removeprefix("dlcourse_exporter").lstrip("."))
    return found


def layer_files(layer: str) -> list[Path]:
    return sorted((EXPORTER / layer).glob("*.py"))


@pytest.mark.parametrize("path", layer_files("collectors"), ids=lambda p: p.name)
def test_collectors_import_no_source_and_nothing_above_them(path):
    for module in imported(path):
        assert not module.startswith("sources"), f"{path.name} imports {module}"
        assert module.split(".")[0] not in ABOVE, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", layer_files("sources"), ids=lambda p: p.name)
def test_sources_import_no_collector_and_nothing_above_them(path):
    for module in imported(path):
        assert not module.startswith("collectors"), f"{path.name} imports {module}"
        assert module.split(".")[0] not in ABOVE, f"{path.name} imports {module}"


def test_the_model_imports_nothing_of_the_exporter():
    assert imported(EXPORTER / "model.py") == set()

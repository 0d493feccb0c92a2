"""The exporter's hub token scopes are declared once (installer/rendered/templates.py
EXPORTER_SCOPES); the code that needs them imports it, the docs that show them are checked
against it."""

from __future__ import annotations

import re
from pathlib import Path

from dlcourse_exporter.sources.hub import FIELD_SCOPES
from dlcourse_installer.rendered.templates import EXPORTER_SCOPES

from .conftest import REPO

DECLARATION = Path(REPO) / "installer" / "rendered" / "templates.py"
SCOPE = re.compile(r"(?:list|read|access|admin)(?::[\w]+)+")
SKIP_DIRS = {".git", ".venv", ".demo", "build", "node_modules", "__pycache__"}


def python_sources() -> list[Path]:
    found = []
    for path in Path(REPO).rglob("*.py"):
        parts = set(path.relative_to(REPO).parts)
        if not parts & SKIP_DIRS and not any(p.endswith(".egg-info") for p in parts):
            found.append(path)
    return found


def test_no_other_python_file_spells_the_scope_list():
    """A file that names every scope is a second copy of the list (old behaviour:
    testing/hub.py and a test had their own)."""
    copies = [
        str(path.relative_to(REPO))
        for path in python_sources()
        if path != DECLARATION and all(f'"{s}"' in path.read_text() for s in EXPORTER_SCOPES)
    ]
    assert copies == []


def test_the_exporter_needs_exactly_the_declared_scopes():
    """Every field it reads has its scope, and listing users needs list:users: no more."""
    assert {"list:users", *FIELD_SCOPES.values()} == set(EXPORTER_SCOPES)


def doc(name: str) -> str:
    return (Path(REPO) / "docs" / name).read_text()


def test_docs_hub_md_shows_the_declared_scopes():
    text = doc("hub.md")
    section = text.split("## What the exporter may do", 1)[1].split("Never more", 1)[0]
    table = re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)
    assert tuple(table) == EXPORTER_SCOPES
    snippet = text.split("```python", 1)[1].split("```", 1)[0]
    scopes = snippet.split('"scopes": [', 1)[1].split("]", 1)[0]
    assert tuple(re.findall(r'"([^"]+)"', scopes)) == EXPORTER_SCOPES


def test_the_other_docs_show_the_declared_scopes():
    role = re.compile(r"dlcourse-exporter:\n.*\n\s+scopes: \[([^]]+)\]")
    (kubernetes,) = role.findall(doc("kubernetes.md"))
    assert tuple(kubernetes.split(", ")) == EXPORTER_SCOPES
    installer = doc("installer.md").split("role scopes exactly", 1)[1].split("(never", 1)[0]
    assert tuple(SCOPE.findall(installer)) == EXPORTER_SCOPES
    # The runbook names the table rather than a list of its own.
    hub_api = doc("runbooks.md").split("## DLCourseHubAPIUnreachable", 1)[1].split("\n## ", 1)[0]
    assert SCOPE.findall(hub_api) == [] and "hub.md" in hub_api

"""The installer's folders say where their code runs and what it leans on (installer/__init__.py).

Read from the source with ast, imports inside functions included:

- what runs outside the installer's own process imports only what is there: probes/ (a
  student's Python), bootstrap.py (a bare server's), hub/ (JupyterHub's process);
- layout/ and catalogs/ are leaves every folder may use, hub/ included;
- machine/ (the one door to the host) knows nothing of checklist/, rendered/ or inputs/;
  inputs/ and catalogs/ nothing of machine/; only cli and docs import checklist/;
- no import cycle, between modules nor between folders.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

INSTALLER = Path(REPO) / "installer"
PACKAGE = "dlcourse_installer"

# Which folders (and top-level modules) each may import, besides itself. A folder not named
# as a key may import nothing of the installer but itself.
MAY_IMPORT = {
    "hub": {"layout", "catalogs"},
    # hub: the GPU policies' names are --gpu-policy's choices (gpu_policy.POLICIES).
    "inputs": {"catalogs", "hub"},
    "machine": {"layout", "catalogs", "probes"},
    # probes: the kernel extension's text, copied into the users' environment (as machine/
    # reads the probe's text to run it there); rendered/ never runs it.
    "rendered": {"layout", "catalogs", "inputs", "machine", "probes"},
    # Not hub/ nor probes/: their code runs elsewhere, and the checklist only names it.
    "checklist": {"layout", "catalogs", "inputs", "machine", "rendered"},
    "cli": {"__init__", "layout", "inputs", "machine", "rendered", "checklist", "report"},
    # `dlcourse-install report`: Prometheus's answers for the lecturer, as root.
    "report": {"layout"},
    "docs": {"inputs", "checklist"},
    "__main__": {"cli"},
    # It loads the checkout's dlcourse_installer by path, then hands over to cli.
    "bootstrap": {"cli"},
}
# What else each may import beyond the standard library, because it is there where it runs.
HUB_ENVIRONMENT = {
    # TLJH 2.0.0's hub environment: jupyterhub (tljh/requirements-hub-env.txt), which brings
    # traitlets and tornado, and PyYAML through jupyter_events (their Requires-Dist); pluggy
    # and bcrypt are TLJH's own dependencies (setup.py install_requires).
    "jupyterhub", "traitlets", "tornado", "yaml", "pluggy", "bcrypt",
    "dlcourse_secretfile",  # stdlib only itself (tests/secretfile)
}  # fmt: skip
THIRD_PARTY = {
    "hub": HUB_ENVIRONMENT,
    # The users' environment's own tools, each tried and done without when absent.
    # ipykernel: the kernel extension (kernel_gpu_errors.py) runs inside every kernel, which
    # ipykernel itself runs.
    "probes": {"packaging", "pip", "conda", "ipykernel"},
    # A dependency of dlcourse, imported late (webauth.py) so that a dry run from a bare
    # checkout (bootstrap.py --dry-run, the system Python) needs the standard library only.
    "rendered": {"bcrypt"},
}


def modules() -> dict[str, Path]:
    """Every module by its dotted name (a package by its folder's name)."""
    found = {}
    for path in sorted(INSTALLER.rglob("*.py")):
        parts = path.relative_to(INSTALLER).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = modules()


def place(module: str) -> str:
    """The folder a module is in, or the top-level module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> Iterator[str]:
    """Every name a file imports absolutely: modules, and for ``from X import a`` X.a."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def installer_edges(path: Path) -> set[str]:
    """The installer's modules a file imports: ``from a.b import c`` is a.b.c if that is a
    module, else a.b."""
    found = set()
    for name in imports(path):
        while name.startswith(PACKAGE) and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith(PACKAGE):
            found.add(name)
    return found


GRAPH = {module: installer_edges(path) - {module} for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_folder_imports_only_the_folders_it_may(module):
    here = place(module)
    for target in GRAPH[module]:
        there = place(target)
        assert there == here or there in MAY_IMPORT.get(here, set()), f"{module} -> {target}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_folder_imports_only_what_is_there_where_it_runs(module):
    allowed = THIRD_PARTY.get(place(module), set())
    for name in imports(MODULES[module]):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top == PACKAGE or top in allowed, (
            f"{module} imports {name}"
        )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_round_a_cycle():
    assert cycles(GRAPH) == []


def test_no_folder_imports_itself_round_a_cycle():
    folders: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        folders.setdefault(place(module), set()).update(
            place(t) for t in targets if place(t) != place(module)
        )
    assert cycles(folders) == []


def test_every_folder_is_a_package_the_wheel_carries():
    """A folder without __init__.py, or missing from pyproject's list, is not in the wheel."""
    pyproject = (Path(REPO) / "pyproject.toml").read_text()
    for folder in sorted({p.parent for p in INSTALLER.rglob("*.py")}):
        if "__pycache__" in folder.parts:
            continue
        assert (folder / "__init__.py").exists(), folder
        name = ".".join((PACKAGE, *folder.relative_to(INSTALLER).parts))
        assert f'"{name}"' in pyproject, f"pyproject.toml's packages lack {name}"

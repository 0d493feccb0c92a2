"""The course packages file: what every student's environment gets, as the lecturer lists it.

    # pip packages, one per line, as in a requirements.txt
    transformers==4.46.3
    scikit-learn>=1.5
    torchvision                     # from PyTorch's index, the installer's CUDA build

    conda:
    # conda-forge packages, in conda's own spelling
    gdal=3.9  import=osgeo
    ffmpeg

A requirements file, so a course repository's ``requirements.txt`` works as it is, plus an
optional ``conda:`` section for what only conda-forge builds well (GDAL and its C libraries).
Not an ``environment.yml``: the installer is stdlib-only and cannot read YAML, conda would
solve the whole environment from it (and run its pip part with ``-U``), and it has no place
for the module a package is imported as. ``import=MODULE`` names that module where the
package's metadata does not tell it (a conda package without a Python distribution).

Every line is checked, and each bad one gets one line naming the file and the line; nothing
is installed until the file is clean. Not taken: pip options (``-r``, ``-e``,
``--index-url``: the installer chooses PyTorch's index itself), environment markers (one
server, one Python), line continuations, and other conda channels than conda-forge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlcourse_installer.catalogs.pytorch import CONDA_NAMES, PACKAGES

# PEP 508: a name, extras, then version specifiers or "@ URL".
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPECIFIER = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9_.*+!-]+"
PIP_REQUIREMENT = re.compile(
    rf"^(?P<name>{_NAME})\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
    rf"(?:\(?\s*{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*\s*\)?|@\s*\S+://\S+)?$"
)
# conda's MatchSpec, loosely: [conda-forge::]name, then version and build in its characters.
CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[A-Za-z0-9_.-]+)::)?(?P<name>[a-z0-9_][a-z0-9_.+-]*)"
    r"(?P<rest>(?:\s*[=<>!~]|\s+)[A-Za-z0-9_.*,|<>=!~+ -]*)?$"
)
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
COMMENT = re.compile(r"(^|\s)#.*$")
CONDA_SECTION = "conda:"


@dataclass(frozen=True)
class Package:
    kind: str  # "pip" or "conda"
    spec: str  # as pip or conda takes it: "transformers==4.46.3", "gdal=3.9"
    name: str  # the distribution (pip) or package (conda) name, as written
    modules: tuple[str, ...] = ()  # import=, when the metadata does not tell
    line: int = 0

    @property
    def is_pytorch(self) -> bool:
        return self.kind == "pip" and canonical(self.name) in PACKAGES


@dataclass(frozen=True)
class CoursePackages:
    text: str  # the file as written: kept whole in /etc/dlcourse/course-packages
    packages: tuple[Package, ...]

    def of_kind(self, kind: str) -> list[Package]:
        return [p for p in self.packages if p.kind == kind]


def canonical(name: str) -> str:
    """PEP 503: Scikit_Learn and scikit-learn are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str, source: str = "course packages") -> tuple[CoursePackages, list[str]]:
    """The packages and, for every bad line, one error line."""
    packages: list[Package] = []
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    kind, conda_line = "pip", 0
    for lineno, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = COMMENT.sub("", raw).strip()
        if not line:
            continue
        if line == CONDA_SECTION:
            if conda_line:
                errors.append(f"{source}:{lineno}: 'conda:' again (the section began on line "
                              f"{conda_line})")  # fmt: skip
            kind, conda_line = "conda", conda_line or lineno
            continue
        package, error = _package(kind, line, lineno)
        if error:
            errors.append(f"{source}:{lineno}: {error}")
            continue
        key = (kind, canonical(package.name))
        if key in seen:
            errors.append(f"{source}:{lineno}: {package.name} is listed twice (first on line "
                          f"{seen[key]})")  # fmt: skip
            continue
        seen[key] = lineno
        packages.append(package)
    return CoursePackages(text, tuple(packages)), errors


def _package(kind: str, line: str, lineno: int) -> tuple[Package | None, str]:
    spec, modules, error = _split_import(line)
    if error:
        return None, error
    if kind == "pip":
        return _pip(spec, modules, lineno)
    return _conda(spec, modules, lineno)


def _split_import(line: str) -> tuple[str, tuple[str, ...], str]:
    """``gdal=3.9 import=osgeo`` -> ("gdal=3.9", ("osgeo",), "")."""
    last = line.split()[-1]
    if not last.startswith("import="):
        return line, (), ""
    head = line[: line.rindex(last)].strip()
    modules = tuple(m for m in last.removeprefix("import=").split(",") if m)
    bad = [m for m in modules if not MODULE.match(m)]
    if not modules or bad:
        return "", (), f"import= takes module names separated by commas, got {last!r}"
    if not head:
        return "", (), f"{last} names the module of which package?"
    return head, modules, ""


def _pip(spec: str, modules: tuple[str, ...], lineno: int) -> tuple[Package | None, str]:
    if spec.startswith("-"):
        return None, (
            f"{spec.split()[0]}: pip options are not taken here; list packages only (the "
            "installer chooses PyTorch's index itself)"
        )
    if spec.endswith("\\"):
        return None, "line continuations (\\) are not taken: one package per line"
    if ";" in spec:
        return None, "environment markers (;) are not taken: every student has the same Python"
    found = PIP_REQUIREMENT.match(spec)
    if not found:
        return None, (
            f"{spec!r} is not a pip requirement (NAME, NAME==1.2, NAME>=1.2,<2, NAME[extra] "
            "or NAME @ URL)"
        )
    name = found["name"]
    if canonical(name) == "pytorch":
        return None, "PyTorch's pip name is torch (the installer installs it already)"
    return Package("pip", spec, name, modules, lineno), ""


def _conda(spec: str, modules: tuple[str, ...], lineno: int) -> tuple[Package | None, str]:
    found = CONDA_SPEC.match(spec)
    if not found:
        return None, f"{spec!r} is not a conda package (NAME, NAME=1.2, NAME>=1.2 or NAME 1.2.*)"
    if found["channel"] not in (None, "conda-forge"):
        return None, f"{found['channel']}::{found['name']}: only conda-forge packages are taken"
    name = found["name"]
    if name in CONDA_NAMES.values() or name in PACKAGES:
        return None, (
            f"{name} from conda would replace the installer's PyTorch build: list "
            f"{'torch' if name == 'pytorch' else name} in the pip part instead"
        )
    plain = spec.removeprefix("conda-forge::")
    return Package("conda", plain, name, modules, lineno), ""

"""The course roster: a CSV file of students, as a lecturer exports it from a spreadsheet.

    # comments and blank lines anywhere
    username,section,role
    ada,A,student
    grace,B 2
    tom,,ta

A ``role`` column is optional: ``student`` (the default) or ``ta``. TAs are staff (they see
per-student data, docs/security.md) and need no section. A ``gpu`` column is optional too:
the index of the GPU (as nvidia-smi numbers them) a student's server gets under the GPU
policy ``roster`` (docs/gpu-assignment.md); blank for none.

The header may come after comments or blank lines and names the columns in any order; a
file without one is read as username,section. Excel's UTF-8 byte order mark and its
semicolon-separated CSV are accepted. Every row is checked, and each bad one gets one line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

# A hub name that TLJH turns into a valid Linux account: TLJH creates "jupyter-<name>",
# shortened with a hash when long (tljh/user_creating_spawner.py, tljh/normalize.py, TLJH
# 2.0.0), with useradd, which takes lowercase letters, digits, '.', '_' and '-' after a
# first letter; the hub lowercases names itself. A conservative subset of both.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
COLUMNS = ("username", "section", "role", "gpu")  # each later column is one more name here
REQUIRED = ("username", "section")
DEFAULT_COLUMNS = REQUIRED  # a file without a header
ROLES = ("student", "ta")
MAX_GPUS = 64  # more than any one server holds


@dataclass(frozen=True)
class Student:
    username: str
    group: str  # the hub group of the section: section-<name>; "" for a TA without one
    role: str = "student"
    gpu: int | None = None  # for the GPU policy "roster"


def section_group(section: str) -> str:
    return "section-" + re.sub(r"[^a-z0-9._-]+", "-", section.lower()).strip("-")


def parse(text: str, source: str = "roster") -> tuple[tuple[Student, ...], list[str]]:
    """The students and, for every bad row, one error line."""
    text = text.removeprefix("\ufeff")
    students: list[Student] = []
    errors: list[str] = []
    seen: set[str] = set()
    columns: list[str] | None = None
    for lineno, cells in _records(text):
        if columns is None:
            columns, header_error = _header(cells)
            if header_error:
                return (), [f"{source}:{lineno}: {header_error}"]
            if columns is not None:
                continue  # this was the header
            columns = list(DEFAULT_COLUMNS)
        if len(cells) != len(columns):
            errors.append(
                f"{source}:{lineno}: expected {len(columns)} fields ({','.join(columns)}), "
                f"got {len(cells)}"
            )
            continue
        row = dict(zip(columns, cells, strict=True))
        name, group = row["username"].lower(), section_group(row["section"])
        role = row.get("role", "").lower() or "student"
        gpu = row.get("gpu", "")
        if not NAME.match(name):
            errors.append(
                f"{source}:{lineno}: {row['username']!r} is not a usable username (letters, "
                "digits, '.', '_' or '-', starting with a letter or digit, 32 at most)"
            )
        elif name in seen:
            errors.append(f"{source}:{lineno}: {name!r} appears twice")
        elif role not in ROLES:
            errors.append(f"{source}:{lineno}: role {row['role']!r} of {name!r}: student or ta")
        elif group == "section-" and role != "ta":
            errors.append(f"{source}:{lineno}: no section for {name!r}")
        # ASCII digits only: str.isdigit() is also true for '²' (int() refuses it) and
        # int() takes '١' or '𝟙' as 1.
        elif gpu and not (gpu.isascii() and gpu.isdigit() and int(gpu) < MAX_GPUS):
            errors.append(
                f"{source}:{lineno}: gpu {gpu!r} of {name!r}: a GPU index as nvidia-smi shows "
                "it (0, 1, ...), or blank"
            )
        else:
            seen.add(name)
            section = "" if group == "section-" else group
            students.append(Student(name, section, role, int(gpu) if gpu else None))
    return tuple(students), errors


def _records(text: str):
    """(line number, stripped cells) of each row that is not blank or a comment."""
    lines = [line for line in text.splitlines() if line.strip() and not _comment(line)]
    delimiter = ";" if lines and ";" in lines[0] and "," not in lines[0] else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for record in reader:
        cells = [c.strip() for c in record]
        if any(cells) and not cells[0].startswith("#"):
            yield reader.line_num, cells


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _header(cells: list[str]) -> tuple[list[str] | None, str]:
    """(columns, "") for a header row, (None, "") for a data row, or an error."""
    names = [c.lower() for c in cells]
    if "username" not in names:
        return None, ""
    unknown = [c for c in names if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in names]
    if unknown or missing or len(set(names)) != len(names):
        return None, (
            f"the header must name the columns {', '.join(REQUIRED)} once each, and may name "
            f"role and gpu (got {', '.join(cells)})"
        )
    return names, ""

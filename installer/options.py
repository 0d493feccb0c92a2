"""The installer's inputs, validated up front with every error listed at once."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

# What TLJH and JupyterHub accept as a user or group name without escaping.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MEMORY = re.compile(r"^\d+(\.\d+)?[KMGT]$")

DEFAULT_TLJH_VERSION = "1.0.0"


@dataclass(frozen=True)
class Options:
    admins: tuple[str, ...] = ()
    driver: str | None = None
    ppa: bool = False
    reboot: bool = False
    no_gpu: bool = False
    tensorflow: bool = False
    roster: tuple[tuple[str, str], ...] = ()  # (username, section)
    mem_limit: str | None = None
    cpu_limit: str | None = None
    grafana_port: int | None = None
    tljh_version: str = DEFAULT_TLJH_VERSION
    source: str = ""  # pip spec (or checkout path) that installs dlcourse
    assets: str = ""  # checkout holding prometheus/ and grafana/
    torch_spec: tuple[str, ...] = ("torch", "torchvision")
    dry_run: bool = False
    yes: bool = False
    recheck: bool = False

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for user, section in self.roster:
            out.setdefault(section, []).append(user)
        return out


def parse_roster(
    text: str, source: str = "roster"
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """``username,section`` rows (a header line is allowed). Returns rows and errors."""
    rows: list[tuple[str, str]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for lineno, record in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in record]
        if lineno == 1 and [c.lower() for c in cells[:2]] == ["username", "section"]:
            continue
        if len(cells) != 2:
            errors.append(
                f"{source}:{lineno}: expected 'username,section', got {len(cells)} fields"
            )
            continue
        user, section = cells[0].lower(), cells[1]
        group = "section-" + re.sub(r"[^a-z0-9._-]+", "-", section.lower()).strip("-")
        if not NAME.match(user):
            errors.append(f"{source}:{lineno}: {cells[0]!r} is not a valid username")
        elif user in seen:
            errors.append(f"{source}:{lineno}: {user!r} appears twice")
        elif group == "section-":
            errors.append(f"{source}:{lineno}: empty section for {user!r}")
        else:
            seen.add(user)
            rows.append((user, group))
    return tuple(rows), errors


def validate(opts: Options) -> list[str]:
    errors = []
    if not opts.admins:
        errors.append("--admin NAME is required: the first hub administrator")
    errors += [f"--admin {a!r} is not a valid username" for a in opts.admins if not NAME.match(a)]
    if opts.driver is not None and not opts.driver.isdigit():
        errors.append(f"--driver {opts.driver!r}: give the driver branch number, e.g. 550")
    if opts.no_gpu and (opts.driver or opts.ppa):
        errors.append("--no-gpu cannot be combined with --driver or --ppa")
    if opts.mem_limit is not None and not MEMORY.match(opts.mem_limit):
        errors.append(f"--mem-limit {opts.mem_limit!r}: use a size such as 4G or 512M")
    if opts.cpu_limit is not None:
        try:
            if float(opts.cpu_limit) <= 0:
                raise ValueError
        except ValueError:
            errors.append(f"--cpu-limit {opts.cpu_limit!r}: use a positive number of CPUs")
    if opts.grafana_port is not None and not 1 <= opts.grafana_port <= 65535:
        errors.append(f"--grafana-port {opts.grafana_port}: not a TCP port")
    return errors

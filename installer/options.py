"""The installer's inputs, validated up front with every error listed at once."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from dlcourse_installer import driver

# What TLJH and JupyterHub accept as a user or group name without escaping.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MEMORY = re.compile(r"^\d+(\.\d+)?[KMGT]$")
# tljh-config refuses any other limits.cpu: TLJH's schema makes it an integer
# (tljh/config_schema.py, "Limits"; TLJH 2.0.0), although JupyterHub takes fractions.
WHOLE_CPUS = re.compile(r"^[1-9]\d*$")
# A host name (optionally :port), or the same after http:// or https://; no path.
DOMAIN = re.compile(r"^(https?://)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:\d{1,5})?$")

# The newest TLJH release (tag 2.0.0, 2024-10-21: JupyterHub 5, Ubuntu >= 22.04, a Python 3.12
# user environment from Miniforge 24.7.1-2; tljh/requirements-hub-env.txt, tljh/installer.py,
# bootstrap/bootstrap.py of that tag). Its bootstrap flags: --version, then TLJH's installer's
# --admin NAME[:PASSWORD] and --plugin SPEC.
DEFAULT_TLJH_VERSION = "2.0.0"
ROLES = ("student", "ta")


@dataclass(frozen=True)
class Options:
    admins: tuple[str, ...] = ()
    driver: str | None = None
    ppa: bool = False
    reboot: bool = False
    no_gpu: bool = False
    tensorflow: bool = False
    roster: tuple[tuple[str, str, str], ...] = ()  # (username, section group or "", role)
    # Hub admins and this group's members are staff: they alone see per-student data.
    staff_group: str = "instructors"
    domain: str = ""  # the hub's public address (default: this server's name)
    mem_limit: str | None = None
    cpu_limit: str | None = None
    grafana_port: int | None = None
    tljh_version: str = DEFAULT_TLJH_VERSION
    source: str = ""  # pip spec (or checkout path) that installs dlcourse
    torch_spec: tuple[str, ...] = ("torch", "torchvision")
    dry_run: bool = False
    yes: bool = False
    recheck: bool = False

    def groups(self) -> dict[str, list[str]]:
        """Hub groups from the roster: one per section, and the staff group for the TAs."""
        out: dict[str, list[str]] = {}
        for user, section, role in self.roster:
            if section:
                out.setdefault(section, []).append(user)
            if role == "ta":
                out.setdefault(self.staff_group, []).append(user)
        return out

    @property
    def tas(self) -> tuple[str, ...]:
        return tuple(user for user, _, role in self.roster if role == "ta")


def parse_roster(
    text: str, source: str = "roster"
) -> tuple[tuple[tuple[str, str, str], ...], list[str]]:
    """``username,section[,role]`` rows (a header line is allowed); role is ``student`` (the
    default) or ``ta``, and a TA needs no section. Returns (user, group, role) rows and errors.
    """
    rows: list[tuple[str, str, str]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for lineno, record in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in record]
        if lineno == 1 and [c.lower() for c in cells[:2]] == ["username", "section"]:
            continue
        if len(cells) not in (2, 3):
            errors.append(
                f"{source}:{lineno}: expected 'username,section[,role]', got {len(cells)} fields"
            )
            continue
        user, section = cells[0].lower(), cells[1]
        role = cells[2].lower() if len(cells) == 3 and cells[2] else "student"
        group = "section-" + re.sub(r"[^a-z0-9._-]+", "-", section.lower()).strip("-")
        if not NAME.match(user):
            errors.append(f"{source}:{lineno}: {cells[0]!r} is not a valid username")
        elif user in seen:
            errors.append(f"{source}:{lineno}: {user!r} appears twice")
        elif role not in ROLES:
            errors.append(f"{source}:{lineno}: role {cells[2]!r} of {user!r} is not student or ta")
        elif group == "section-" and role != "ta":
            errors.append(f"{source}:{lineno}: empty section for {user!r}")
        else:
            seen.add(user)
            rows.append((user, "" if group == "section-" else group, role))
    return tuple(rows), errors


def validate(opts: Options) -> list[str]:
    errors = []
    if not opts.admins:
        errors.append("--admin NAME is required: the first hub administrator")
    errors += [f"--admin {a!r} is not a valid username" for a in opts.admins if not NAME.match(a)]
    branch = driver.parse_branch(opts.driver) if opts.driver is not None else None
    if opts.driver is not None and branch is None:
        errors.append(
            f"--driver {opts.driver!r}: give a branch, optionally with -server and/or -open, "
            "e.g. 580, 580-server, 580-server-open"
        )
    if opts.no_gpu and (opts.driver or opts.ppa):
        errors.append("--no-gpu cannot be combined with --driver or --ppa")
    if opts.ppa and (branch is None or branch.server):
        errors.append(
            "--ppa needs --driver BRANCH without -server (the graphics-drivers PPA has no "
            "server builds), e.g. --ppa --driver 580"
        )
    if opts.mem_limit is not None and not MEMORY.match(opts.mem_limit):
        errors.append(f"--mem-limit {opts.mem_limit!r}: use a size such as 4G or 512M")
    if opts.cpu_limit is not None and not WHOLE_CPUS.match(opts.cpu_limit):
        errors.append(
            f"--cpu-limit {opts.cpu_limit!r}: use a positive whole number of CPUs, e.g. 2 (TLJH "
            "takes no fractions)"
        )
    if not NAME.match(opts.staff_group):
        errors.append(f"--staff-group {opts.staff_group!r} is not a valid group name")
    if opts.domain and not DOMAIN.match(opts.domain):
        errors.append(
            f"--domain {opts.domain!r}: give the hub's address, e.g. course.example.edu "
            "or https://course.example.edu"
        )
    if opts.grafana_port is not None and not 1 <= opts.grafana_port <= 65535:
        errors.append(f"--grafana-port {opts.grafana_port}: not a TCP port")
    return errors

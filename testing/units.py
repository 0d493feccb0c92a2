"""systemd units as systemd reads them, and their daemons run as those units say.

Test machines (containers) have no systemd as PID 1, so no unit can be started. What they
have is systemd's own parser: ``systemd-analyze verify`` loads a unit with its drop-ins
from a folder laid out as a server (``--root``) and, at debug log level, prints every
setting as systemd will apply it (systemd 252, ``src/core/unit.c`` ``unit_dump``). So

    unit = read_unit(site.root, "prometheus.service")   # the package's unit + our drop-in
    unit.user, unit.ambient_capabilities, unit.restart, unit.restart_seconds

are systemd's answers, not a re-parse of ours; ``problems`` lists what it warned about.
``Supervised`` then runs a daemon with exactly those settings: as ``User=`` with the unit's
capability sets (util-linux ``setpriv``, as systemd's ``AmbientCapabilities=`` and
``CapabilityBoundingSet=`` do), started again ``RestartSec=`` after it exits while
``Restart=`` says so. It is driven by ``poll()`` (call it while waiting), so nothing is
started from another thread (``leftovers.die_with_parent`` follows the starting thread).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .leftovers import die_with_parent, terminate

# systemd.service(5): the exits after which each Restart= value starts the service again
# (a clean exit is status 0; a signal other than SIGHUP/INT/TERM/PIPE is not clean).
RESTART_ON = {
    "no": lambda clean: False,
    "always": lambda clean: True,
    "on-success": lambda clean: clean,
    "on-failure": lambda clean: not clean,
    "on-abnormal": lambda clean: False,
    "on-abort": lambda clean: False,
    "on-watchdog": lambda clean: False,
}
_SETTING = re.compile(r"^\t\t([A-Za-z][A-Za-z ]*): (.*)$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


class UnitError(Exception):
    """systemd could not read the unit; str() says why."""


@dataclass(frozen=True)
class Unit:
    name: str
    user: str  # "root" where the unit names none
    ambient_capabilities: frozenset[str]  # lower case, as systemd prints them
    bounding_capabilities: frozenset[str] | None  # None: not limited
    private_users: bool
    restart: str
    restart_seconds: float
    restart_prevented: frozenset[int]  # RestartPreventExitStatus=: never restarted after these
    # StartLimitIntervalSec= and StartLimitBurst=: more starts than this within the interval
    # and systemd gives up ("start request repeated too quickly"); an interval of 0: never.
    start_limit_seconds: float
    start_limit_burst: int
    drop_ins: tuple[str, ...]
    problems: tuple[str, ...]  # systemd's warnings about the unit's own files


def available() -> str | None:
    """Why units cannot be read here, or None."""
    for tool in ("systemd-analyze", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def seconds(text: str) -> float:
    """A systemd time span ("5s", "100ms", "1min 30s", or a unit-less "10": seconds,
    systemd.time(7)) in seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text.strip()):
        return float(text)
    return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION.findall(text))


def read_unit(root: Path, name: str) -> Unit:
    """``name`` with its drop-ins under ``root`` (``usr/lib/systemd/system``,
    ``etc/systemd/system``), as systemd-analyze loads it."""
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", name],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_COLOR": "0"},
    )  # fmt: skip
    settings: dict[str, list[str]] = {}
    for line in (result.stdout + result.stderr).splitlines():
        match = _SETTING.match(line)
        if match:
            settings.setdefault(match[1], []).append(match[2].strip())
    if "Restart" not in settings:
        raise UnitError(f"systemd-analyze printed no settings for {name}:\n{result.stderr[-2000:]}")
    files = settings.get("Fragment Path", []) + settings.get("DropIn Path", [])
    # systemd's warnings about a file read "PATH:LINE: what" (its log_syntax()).
    problems = tuple(
        line for line in result.stderr.splitlines()
        if any(line.startswith(f"{f}:") for f in files)
    )  # fmt: skip
    bounding = settings.get("CapabilityBoundingSet")
    assignments = written(root, files)

    def capabilities(values: list[str] | None) -> frozenset[str]:
        return frozenset(c for value in values or [] for c in value.split())

    return Unit(
        name=name,
        user=(settings.get("User") or ["root"])[0],
        ambient_capabilities=capabilities(settings.get("AmbientCapabilities")),
        bounding_capabilities=None if bounding is None else capabilities(bounding),
        private_users=(settings.get("PrivateUsers") or ["no"])[0] == "yes",
        restart=settings["Restart"][0],
        restart_seconds=seconds(settings.get("RestartSec", ["100ms"])[0]),
        restart_prevented=restart_prevented(assignments),
        # systemd-system.conf(5): DefaultStartLimitIntervalSec=10s, DefaultStartLimitBurst=5.
        start_limit_seconds=seconds(last(assignments, "StartLimitIntervalSec", "10s")),
        start_limit_burst=int(last(assignments, "StartLimitBurst", "5")),
        drop_ins=tuple(settings.get("DropIn Path", [])),
        problems=problems,
    )


def written(root: Path, files: list[str]) -> list[tuple[str, str]]:
    """(key, value) of every assignment in the unit's files, in systemd's order: for what
    systemd 252's dump leaves out (RestartPreventExitStatus=, the start limit)."""
    found = []
    for path in files:
        local = Path(path) if Path(path).is_relative_to(root) else root / path.lstrip("/")
        for line in local.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith(("#", ";")):
                found.append((key.strip(), value.strip()))
    return found


def restart_prevented(assignments: list[tuple[str, str]]) -> frozenset[int]:
    """Each RestartPreventExitStatus= adds its statuses, an empty one clears them
    (systemd.service(5))."""
    statuses: set[int] = set()
    for key, value in assignments:
        if key == "RestartPreventExitStatus":
            statuses = statuses | {int(v) for v in value.split() if v.isdigit()} if value else set()
    return frozenset(statuses)


def last(assignments: list[tuple[str, str]], key: str, default: str) -> str:
    values = [value for k, value in assignments if k == key]
    return values[-1] if values else default


def as_unit(unit: Unit, argv: list[str], user: str | None = None) -> list[str]:
    """argv run as the unit runs it: its account (or ``user``) with its capability sets."""
    account = user or unit.user
    if account == "root":
        return list(argv)
    inherit = ",".join(f"+{c.removeprefix('cap_')}" for c in sorted(unit.ambient_capabilities))
    options = [f"--reuid={account}", f"--regid={account}", "--clear-groups"]
    if inherit:
        options += [f"--inh-caps={inherit}", f"--ambient-caps={inherit}"]
    if unit.bounding_capabilities is not None:
        kept = "".join(f",+{c.removeprefix('cap_')}" for c in sorted(unit.bounding_capabilities))
        options.append(f"--bounding-set=-all{kept}")
    return ["setpriv", *options, "--", *argv]


class Supervised:
    """A daemon under its unit's restart policy; ``poll()`` plays systemd's part."""

    def __init__(self, unit: Unit, argv: list[str], log: Path, *, user: str | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.unit = unit
        self.argv = as_unit(unit, argv, user)
        self.env = env
        self.log = log
        self.exits: list[int] = []  # every exit status seen, in order
        self.process: subprocess.Popen[bytes] | None = None
        self._restart_at: float | None = None
        self._starts: list[float] = []
        self._log_mark = 0
        self.start()

    def start(self) -> None:
        """Starts it now (``systemctl start``)."""
        self._restart_at = None
        self._starts.append(time.monotonic())
        self._log_mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                die_with_parent(self.argv), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def poll(self) -> bool:
        """True while the daemon's process runs; starts it again when systemd would."""
        if self.process is not None:
            status = self.process.poll()
            if status is None:
                return True
            self.exits.append(status)
            self.process = None
            prevented = status in self.unit.restart_prevented or self._start_limit_hit()
            if RESTART_ON[self.unit.restart](status == 0) and not prevented:
                self._restart_at = time.monotonic() + self.unit.restart_seconds
        if self._restart_at is not None and time.monotonic() >= self._restart_at:
            self.start()
            return True
        return False

    @property
    def gave_up(self) -> bool:
        """Not running, and not to be started again (a stop, a start limit, a policy)."""
        return self.process is None and self._restart_at is None

    def _start_limit_hit(self) -> bool:
        """One more start would pass StartLimitBurst within StartLimitIntervalSec."""
        if self.unit.start_limit_seconds == 0:
            return False
        since = time.monotonic() + self.unit.restart_seconds - self.unit.start_limit_seconds
        return len([t for t in self._starts if t >= since]) >= self.unit.start_limit_burst

    def since_start(self) -> str:
        """What the daemon wrote since the last start()."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            f.seek(self._log_mark)
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        """``systemctl stop``: no restart afterwards."""
        self._restart_at = None
        if self.process is not None:
            terminate(self.process)
            self.process = None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])

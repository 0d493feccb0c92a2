"""The installer's options, each declared once: its flag, help, reading, check and default.

``OPTIONS`` is the one list, as the exporter's ``exporter/options.py`` and ``config.OPTIONS``:
``cli`` makes the flags from it, ``options_from`` reads and checks them with every error
listed at once, and ``docs`` writes the option table of docs/installer.md from it. The steps
name the options they read (each step's ``STEP``, checklist/) and see only those
(``Options.only``): a rerun with one option changed runs again exactly the steps that read it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcourse_installer.catalogs import driver
from dlcourse_installer.hub.gpu_policy import DEFAULT_POLICY, POLICIES
from dlcourse_installer.inputs import course_packages, roster, source
from dlcourse_installer.inputs.course_packages import CoursePackages
from dlcourse_installer.inputs.roster import NAME

MEMORY = re.compile(r"^\d+(\.\d+)?[KMGT]$")
# tljh-config refuses any other limits.cpu: TLJH's schema makes it an integer
# (tljh/config_schema.py, "Limits"; TLJH 2.0.0), although JupyterHub takes fractions.
WHOLE_CPUS = re.compile(r"^[1-9]\d*$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# --domain: the server's DNS name, optionally with https:// (TLJH serving HTTPS) and a port.
DOMAIN = re.compile(r"^(https?://)?(?P<host>[^/:]+)(:\d{1,5})?$")
# A TLJH release as its tags name them; its bootstrap resolves --version against the tags
# (bootstrap/bootstrap.py _resolve_git_version, TLJH 2.0.0), and the installed release is
# compared with it to tell whether TLJH is current.
RELEASE = re.compile(r"^\d+\.\d+\.\d+$")

# Staff see per-student data: the hub's admins and this hub group (rendered/staff.py).
DEFAULT_STAFF_GROUP = "instructors"

# The newest TLJH release (tag 2.0.0, 2024-10-21: JupyterHub 5, Ubuntu >= 22.04, a Python 3.12
# user environment from Miniforge 24.7.1-2; tljh/requirements-hub-env.txt, tljh/installer.py,
# bootstrap/bootstrap.py of that tag). Its bootstrap flags: --version, then TLJH's installer's
# --admin NAME[:PASSWORD] and --plugin SPEC.
DEFAULT_TLJH_VERSION = "2.0.0"


class FileErrors(ValueError):
    """A file an option names has errors: one complete line each (file:line: what)."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class UndeclaredOption(Exception):
    """A step read an option it does not declare: its reruns would miss that option."""


@dataclass(frozen=True)
class Option:
    name: str  # opts.<name>
    flag: str
    help: str
    default: Any = None
    metavar: str = ""  # none: a switch, on when given
    parse: Callable[[str], Any] = str  # the flag's text -> the value; ValueError(reason)
    check: Callable[[Any], str | None] | None = None  # the reason a value is refused
    repeat: bool = False  # given once per value: a tuple
    # How this run goes, not what it installs: every step may read it, and no step runs
    # again because it changed.
    run: bool = False
    path: bool = False  # names a file or folder: made absolute for `dlcourse-install resume`
    short: str = ""
    default_text: str = ""  # the docs' default where the value alone does not say it

    @property
    def documented_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.default in (None, "", ()):
            return "none"
        return "off" if self.default is False else f"`{self.default}`"


def read_roster(path: str) -> tuple[roster.Student, ...]:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FileErrors([f"--roster: {exc.strerror}: {path}"]) from None
    except UnicodeDecodeError:
        message = f"--roster {path}: not UTF-8 text; in Excel, save it as 'CSV UTF-8'"
        raise FileErrors([message]) from None
    students, errors = roster.parse(text, path)
    if errors:
        raise FileErrors(errors)
    return students


def read_course_packages(path: str, option: str = "--packages") -> CoursePackages:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileErrors([f"{option}: {exc.strerror}: {path}"]) from None
    except UnicodeDecodeError:
        raise FileErrors([f"{option} {path}: not UTF-8 text"]) from None
    listed, errors = course_packages.parse(text, path)
    if errors:
        raise FileErrors(errors)
    return listed


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()):  # not '²', nor '٩٥٢' (int() reads 952)
        raise ValueError("not a TCP port")
    return int(text)


def _matching(pattern: re.Pattern[str], reason: str) -> Callable[[Any], str | None]:
    return lambda value: None if pattern.match(str(value)) else reason


def _one_of(choices: Iterable[str]) -> Callable[[Any], str | None]:
    choices = tuple(choices)
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def _branch(value: str) -> str | None:
    if driver.parse_branch(value) is None:
        return (
            "give a branch, optionally with -server and/or -open, e.g. 580, 580-server, "
            "580-server-open"
        )
    return None


def _domain(value: str) -> str | None:
    found = DOMAIN.match(value)
    if found and HOSTNAME.match(found.group("host")):
        return None
    return "give the server's DNS name, e.g. gpu.example.edu (or https://gpu.example.edu)"


OPTIONS: tuple[Option, ...] = (
    Option(
        "admins", "--admin",
        "hub administrator; a generated password is kept in "
        "/etc/dlcourse/hub-passwords/NAME, readable by root only",
        default=(), metavar="NAME", parse=str.lower, repeat=True,
        check=_matching(NAME, "not a valid username"), default_text="required",
    ),
    Option(
        "driver", "--driver",
        "NVIDIA driver branch, optionally -server and/or -open, e.g. 580-server",
        metavar="BRANCH", check=_branch,
        default_text="what `ubuntu-drivers list --gpgpu` recommends for a compute server",
    ),
    Option(
        "ppa", "--ppa",
        "the graphics-drivers PPA instead of Ubuntu's archive (DKMS; needs --driver BRANCH; "
        "refused with Secure Boot on)",
        default=False,
    ),
    Option(
        "reboot", "--reboot", "reboot for the driver by itself and resume after the boot",
        default=False, run=True,
    ),
    Option("no_gpu", "--no-gpu", "a CPU-only server: no driver, CPU PyTorch", default=False),
    Option(
        "tensorflow", "--tensorflow", "also install TensorFlow for all users", default=False
    ),
    Option(
        "roster", "--roster",
        "the people: a CSV file with the columns username and section, and optionally role "
        "(student or ta; a TA is staff and needs no section) and gpu; a header names them; "
        "Excel's CSV UTF-8 is fine",
        default=(), metavar="CSV", parse=read_roster, path=True,
    ),
    Option(
        "packages", "--packages",
        "the course's packages for every student: pip requirements, then an optional "
        "'conda:' section of conda-forge packages (kept as /etc/dlcourse/course-packages)",
        metavar="FILE", parse=read_course_packages, path=True,
    ),
    Option(
        "mem_limit", "--mem-limit", "memory per user server, e.g. 4G", metavar="SIZE",
        check=_matching(MEMORY, "use a size such as 4G or 512M"),
    ),
    Option(
        "cpu_limit", "--cpu-limit", "CPUs per user server, e.g. 2", metavar="N",
        check=_matching(
            WHOLE_CPUS, "use a positive whole number of CPUs, e.g. 2 (TLJH takes no fractions)"
        ),
    ),
    Option(
        "staff_group", "--staff-group",
        "hub group whose members (TAs) see per-student data, as hub admins do (roster rows "
        "with role 'ta' join it)",
        default=DEFAULT_STAFF_GROUP, metavar="GROUP",
        check=_matching(NAME, "not a valid group name"),
    ),
    Option(
        "gpu_policy", "--gpu-policy",
        f"which GPU each student's server gets: {', '.join(POLICIES)} "
        "(docs/gpu-assignment.md); later: tljh-config set dlcourse.gpu_policy",
        metavar="POLICY", check=_one_of(POLICIES),
        default_text=f"what config.yaml says, else `{DEFAULT_POLICY}`",
    ),
    Option(
        "gpu_strict", "--gpu-strict",
        "and only that GPU's device: the server's unit may open no other GPU (later: "
        "tljh-config set dlcourse.gpu_strict false)",
        default_text="what config.yaml says, else off",
    ),
    Option(
        "gpu_idle_cull", "--gpu-idle-cull",
        "warn, then shut down, kernels that hold GPU memory with no GPU use (20 min, then "
        "10; docs/students.md); later: tljh-config set dlcourse.gpu_idle_cull false",
        default_text="what config.yaml says, else off",
    ),
    Option(
        "grafana_port", "--grafana-port",
        "serve Grafana on this port instead of under /services/grafana/ on the hub",
        metavar="PORT", parse=_port,
        check=lambda port: None if 1 <= port <= 65535 else "not a TCP port",
    ),
    Option(
        "domain", "--domain",
        "the server's DNS name, for Grafana's links and sign-in and the URLs shown at the "
        "end; https://NAME when TLJH serves HTTPS",
        default="", metavar="NAME", check=_domain, default_text="`hostname --fqdn`",
    ),
    Option(
        "tljh_version", "--tljh-version",
        "The Littlest JupyterHub release; a rerun with another one runs TLJH's bootstrap "
        "with it, which upgrades TLJH",
        default=DEFAULT_TLJH_VERSION, metavar="VERSION",
        check=_matching(RELEASE, "give a TLJH release, e.g. 2.0.0"),
        default_text=f"`{DEFAULT_TLJH_VERSION}` (tested)",
    ),
    Option(
        "source", "--source",
        "dlcourse to install for the exporter and the hub: a checkout's folder or a pip spec; "
        "a changed folder or spec is installed again on a rerun",
        metavar="SPEC", parse=source.read_source, path=True,
        default_text="this checkout (bootstrap.py passes it)",
    ),
    Option(
        "prefix", "--prefix", "dlcourse's folder", metavar="DIR", run=True,
        default_text="`$DLCOURSE_PREFIX` or `/opt/dlcourse`",
    ),
    Option(
        "dry_run", "--dry-run",
        "print every command and file it would run or write; change nothing",
        default=False, run=True,
    ),
    Option("yes", "--yes", "do not ask; for unattended runs", default=False, run=True, short="-y"),
    Option(
        "recheck", "--recheck",
        "check every step again, including those an earlier run finished",
        default=False, run=True,
    ),
)  # fmt: skip
BY_NAME = {option.name: option for option in OPTIONS}
RUN_OPTIONS = frozenset(option.name for option in OPTIONS if option.run)


class Options:
    """The install's option values by name (``opts.gpu_policy``), defaults for the rest.

    ``only(names)`` is what a step sees: reading any other option (but those of the run
    itself: --dry-run, --yes, --recheck, --reboot, --prefix) raises UndeclaredOption.
    """

    __slots__ = ("_values", "_visible")

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        full = {o.name: values.get(o.name, o.default) for o in OPTIONS}
        object.__setattr__(self, "_values", full)
        object.__setattr__(self, "_visible", None)

    def __getattr__(self, name: str) -> Any:
        if name not in BY_NAME:
            raise AttributeError(name)
        if self._visible is not None and name not in self._visible:
            raise UndeclaredOption(
                f"{BY_NAME[name].flag} ({name}) is read but not declared: name it in the "
                "reads of the step's STEP (installer/checklist/), so that a change of it runs the "
                "step again"
            )
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("options are read-only: use replace()")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._values == other._values

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if v != BY_NAME[k].default}
        return f"Options({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def replace(self, **changes: Any) -> Options:
        return Options(**{**self._values, **changes})

    def only(self, names: Iterable[str]) -> Options:
        """These options and those of the run; reading another raises UndeclaredOption."""
        view = Options(**self._values)
        object.__setattr__(view, "_visible", frozenset(names) | RUN_OPTIONS)
        return view

    def values(self, names: Iterable[str]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}

    def groups(self) -> dict[str, list[str]]:
        """Hub groups from the roster: one per section, and the staff group for the TAs."""
        out: dict[str, list[str]] = {}
        for student in self.roster:
            if student.group:
                out.setdefault(student.group, []).append(student.username)
            if student.role == "ta":
                out.setdefault(self.staff_group, []).append(student.username)
        return out

    @property
    def roster_gpus(self) -> dict[str, int]:
        """The roster's gpu column: user -> GPU index."""
        return {s.username: s.gpu for s in self.roster if s.gpu is not None}

    @property
    def tas(self) -> tuple[str, ...]:
        return tuple(s.username for s in self.roster if s.role == "ta")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag for every option: its value stays None (or []) when not given."""
    for option in OPTIONS:
        flags = [option.flag, *([option.short] if option.short else [])]
        default = option.default_text.replace("`", "") if option.default_text else option.default
        text = option.help + (" (repeatable)" if option.repeat else "")
        if default not in (None, "", (), False) and not option.repeat:
            text += f" (default: {default})"
        if not option.metavar:
            parser.add_argument(*flags, dest=option.name, action="store_const", const=True,
                                help=text)  # fmt: skip
        elif option.repeat:
            parser.add_argument(*flags, dest=option.name, action="append", default=[],
                                metavar=option.metavar, help=text)  # fmt: skip
        else:
            parser.add_argument(*flags, dest=option.name, metavar=option.metavar, help=text)


def read(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Each given flag's value, read and checked: (values, every error)."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for option in OPTIONS:
        given = getattr(args, option.name, None)
        if given is None or given == []:
            continue
        try:
            if option.repeat:
                values[option.name] = tuple(option.parse(text) for text in given)
            elif option.metavar:
                values[option.name] = option.parse(given)
            else:
                values[option.name] = True
        except FileErrors as exc:
            errors += exc.errors
        except ValueError as exc:
            errors.append(f"{option.flag} {given!r}: {exc}")
    return values, errors


def validate(opts: Options) -> list[str]:
    """Every reason these options are refused: each option's own check, then the rules
    between options."""
    errors = []
    for option in OPTIONS:
        value = getattr(opts, option.name)
        if option.check is None or value in (None, ""):
            continue
        for item in value if option.repeat else (value,):
            reason = option.check(item)
            if reason:
                errors.append(f"{option.flag} {item!r}: {reason}")
    if not opts.admins:
        errors.append("--admin NAME is required: the first hub administrator")
    branch = driver.parse_branch(opts.driver) if opts.driver is not None else None
    if opts.no_gpu and (opts.driver or opts.ppa):
        errors.append("--no-gpu cannot be combined with --driver or --ppa")
    if opts.ppa and (branch is None or branch.server):
        errors.append(
            "--ppa needs --driver BRANCH without -server (the graphics-drivers PPA has no "
            "server builds), e.g. --ppa --driver 580"
        )
    if opts.gpu_policy == "roster" and not opts.roster_gpus:
        errors.append("--gpu-policy roster needs --roster with a gpu column")
    if opts.no_gpu and (opts.gpu_strict or opts.gpu_policy is not None or opts.gpu_idle_cull):
        errors.append(
            "--no-gpu cannot be combined with --gpu-policy, --gpu-strict or --gpu-idle-cull"
        )
    return errors

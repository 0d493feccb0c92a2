"""The installer's inputs, validated up front with every error listed at once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlcourse_installer import driver
from dlcourse_installer.course_packages import CoursePackages
from dlcourse_installer.gpu_policy import POLICIES
from dlcourse_installer.roster import NAME, Student
from dlcourse_installer.staff import DEFAULT_STAFF_GROUP

MEMORY = re.compile(r"^\d+(\.\d+)?[KMGT]$")
# tljh-config refuses any other limits.cpu: TLJH's schema makes it an integer
# (tljh/config_schema.py, "Limits"; TLJH 2.0.0), although JupyterHub takes fractions.
WHOLE_CPUS = re.compile(r"^[1-9]\d*$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# --domain: the server's DNS name, optionally with https:// (TLJH serving HTTPS) and a port.
DOMAIN = re.compile(r"^(https?://)?(?P<host>[^/:]+)(:\d{1,5})?$")

# The newest TLJH release (tag 2.0.0, 2024-10-21: JupyterHub 5, Ubuntu >= 22.04, a Python 3.12
# user environment from Miniforge 24.7.1-2; tljh/requirements-hub-env.txt, tljh/installer.py,
# bootstrap/bootstrap.py of that tag). Its bootstrap flags: --version, then TLJH's installer's
# --admin NAME[:PASSWORD] and --plugin SPEC.
DEFAULT_TLJH_VERSION = "2.0.0"


@dataclass(frozen=True)
class Options:
    admins: tuple[str, ...] = ()
    driver: str | None = None
    ppa: bool = False
    reboot: bool = False
    no_gpu: bool = False
    tensorflow: bool = False
    roster: tuple[Student, ...] = ()
    # Hub admins and this group's members are staff: they alone see per-student data.
    staff_group: str = DEFAULT_STAFF_GROUP
    packages: CoursePackages | None = None  # --packages FILE
    # Which GPU each student's server gets (gpu_policy.py), and only that GPU's device
    # (gpu_hook.py). None: keep what TLJH's config.yaml says (tljh-config set dlcourse.*),
    # so a rerun does not undo a lecturer's change; unset there, least-loaded, not strict.
    gpu_policy: str | None = None
    gpu_strict: bool | None = None
    # Shut down kernels that hold GPU memory idle (gpu_idle.py); None: keep config.yaml's.
    gpu_idle_cull: bool | None = None
    mem_limit: str | None = None
    cpu_limit: str | None = None
    grafana_port: int | None = None
    domain: str = ""  # the server's name in URLs (Grafana's root_url, the summary)
    tljh_version: str = DEFAULT_TLJH_VERSION
    source: str = ""  # pip spec (or checkout path) that installs dlcourse
    torch_spec: tuple[str, ...] = ("torch", "torchvision")
    dry_run: bool = False
    yes: bool = False
    recheck: bool = False

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
    if opts.gpu_policy is not None and opts.gpu_policy not in POLICIES:
        errors.append(f"--gpu-policy {opts.gpu_policy!r}: one of {', '.join(POLICIES)}")
    if opts.gpu_policy == "roster" and not opts.roster_gpus:
        errors.append("--gpu-policy roster needs --roster with a gpu column")
    if opts.no_gpu and (opts.gpu_strict or opts.gpu_policy is not None or opts.gpu_idle_cull):
        errors.append(
            "--no-gpu cannot be combined with --gpu-policy, --gpu-strict or --gpu-idle-cull"
        )
    domain = DOMAIN.match(opts.domain)
    if opts.domain and not (domain and HOSTNAME.match(domain.group("host"))):
        errors.append(
            f"--domain {opts.domain!r}: give the server's DNS name, e.g. gpu.example.edu "
            "(or https://gpu.example.edu)"
        )
    if opts.grafana_port is not None and not 1 <= opts.grafana_port <= 65535:
        errors.append(f"--grafana-port {opts.grafana_port}: not a TCP port")
    return errors

"""``dlcourse-install``: install, ``status``, ``resume``, ``driver --purge`` and ``report``."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from dlcourse_installer import (
    __version__,
    course_packages,
    render,
    report,
    roster,
    runner,
    user_env,
)
from dlcourse_installer.course_packages import CoursePackages
from dlcourse_installer.generated import Facts
from dlcourse_installer.gpu_policy import DEFAULT_POLICY, POLICIES
from dlcourse_installer.host import DryRunHost, Host, RealHost
from dlcourse_installer.options import DEFAULT_TLJH_VERSION, Options, validate
from dlcourse_installer.paths import Paths
from dlcourse_installer.staff import DEFAULT_STAFF_GROUP
from dlcourse_installer.state import State
from dlcourse_installer.steps import STEPS, Context, packages_summary, purge_driver

COMMANDS = ("install", "render", "status", "resume", "driver", "packages", "report")
COURSE_PACKAGES_STEP = next(step for step in STEPS if step.name == "course-packages")


def checkout() -> str:
    """The source checkout this installer runs from, or '' when installed from a wheel."""
    here = Path(__file__).resolve().parent.parent
    return str(here) if (here / "pyproject.toml").exists() and (here / "installer").is_dir() else ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlcourse-install",
        description="Turn a fresh Ubuntu GPU server into the dlcourse platform: NVIDIA driver, "
        "The Littlest JupyterHub, PyTorch with CUDA for all users, the exporter, Prometheus, "
        "Alertmanager and Grafana. Safe to rerun: finished steps are kept.",
        epilog="Other commands: `dlcourse-install packages FILE` (course packages during the "
        "term), `dlcourse-install status`, `dlcourse-install resume`, "
        "`dlcourse-install driver --purge`, `dlcourse-install render --root DIR [options]`, "
        "`dlcourse-install report --since DATE [--csv]` (the term per student).",
    )
    p.add_argument("--version", action="version", version=f"dlcourse-install {__version__}")
    p.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="NAME",
        help="hub administrator (repeatable); a generated password is kept in "
        "/etc/dlcourse/hub-passwords/NAME, readable by root only",
    )
    p.add_argument(
        "--driver",
        metavar="BRANCH",
        help="NVIDIA driver branch, optionally -server and/or -open, e.g. 580-server "
        "(default: what `ubuntu-drivers list --gpgpu` recommends for a compute server)",
    )
    p.add_argument(
        "--ppa",
        action="store_true",
        help="the graphics-drivers PPA instead of Ubuntu's archive (DKMS; needs --driver "
        "BRANCH; refused with Secure Boot on)",
    )
    p.add_argument(
        "--reboot",
        action="store_true",
        help="reboot for the driver by itself and resume after the boot",
    )
    p.add_argument(
        "--no-gpu", action="store_true", help="a CPU-only server: no driver, CPU PyTorch"
    )
    p.add_argument(
        "--tensorflow", action="store_true", help="also install TensorFlow for all users"
    )
    p.add_argument(
        "--roster",
        metavar="CSV",
        help="the people: a CSV file with the columns username and section, and optionally "
        "role (student or ta; a TA is staff and needs no section); a header names them; "
        "Excel's CSV UTF-8 is fine",
    )
    p.add_argument(
        "--packages",
        metavar="FILE",
        help="the course's packages for every student: pip requirements, then an optional "
        "'conda:' section of conda-forge packages (kept as /etc/dlcourse/course-packages)",
    )
    p.add_argument("--mem-limit", metavar="SIZE", help="memory per user server, e.g. 4G")
    p.add_argument("--cpu-limit", metavar="N", help="CPUs per user server, e.g. 2")
    p.add_argument(
        "--staff-group",
        default=DEFAULT_STAFF_GROUP,
        metavar="GROUP",
        help="hub group whose members (TAs) see per-student data, as hub admins do "
        "(default instructors; roster rows with role 'ta' join it)",
    )
    p.add_argument(
        "--gpu-policy",
        metavar="POLICY",
        help=f"which GPU each student's server gets: {', '.join(POLICIES)} (default "
        f"{DEFAULT_POLICY}; docs/gpu-assignment.md); later: tljh-config set dlcourse.gpu_policy",
    )
    p.add_argument(
        "--gpu-strict",
        action="store_true",
        default=None,
        help="and only that GPU's device: the server's unit may open no other GPU (later: "
        "tljh-config set dlcourse.gpu_strict false)",
    )
    p.add_argument(
        "--gpu-idle-cull",
        action="store_true",
        default=None,
        help="warn, then shut down, kernels that hold GPU memory at 0 %% utilization (20 "
        "min, then 10; docs/students.md); later: tljh-config set dlcourse.gpu_idle_cull false",
    )
    p.add_argument(
        "--grafana-port",
        type=int,
        metavar="PORT",
        help="serve Grafana on this port instead of under /services/grafana/ on the hub",
    )
    p.add_argument(
        "--domain",
        metavar="NAME",
        help="the server's DNS name, for Grafana's links and sign-in and the URLs shown at "
        "the end (default: hostname --fqdn); https://NAME when TLJH serves HTTPS",
    )
    p.add_argument(
        "--tljh-version",
        default=DEFAULT_TLJH_VERSION,
        metavar="VERSION",
        help=f"The Littlest JupyterHub release (default {DEFAULT_TLJH_VERSION}, tested)",
    )
    p.add_argument("--source", help="pip spec of dlcourse (default: this checkout)")
    p.add_argument("--prefix", help="dlcourse's folder (default $DLCOURSE_PREFIX or /opt/dlcourse)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every command and file it would run or write; change nothing",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask; for unattended runs")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="check every step again, including those an earlier run finished",
    )
    return p


def options_from(args: argparse.Namespace) -> tuple[Options, list[str]]:
    errors: list[str] = []
    students: tuple = ()
    if args.roster:
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
            text = Path(args.roster).read_text(encoding="utf-8-sig")
            students, errors = roster.parse(text, args.roster)
        except OSError as exc:
            errors.append(f"--roster: {exc.strerror}: {args.roster}")
        except UnicodeDecodeError:
            errors.append(
                f"--roster {args.roster}: not UTF-8 text; in Excel, save it as 'CSV UTF-8'"
            )
    listed = None
    if args.packages:
        listed, package_errors = read_course_packages(args.packages, "--packages")
        errors += package_errors
    here = checkout()
    opts = Options(
        admins=tuple(a.lower() for a in args.admin),
        driver=args.driver, ppa=args.ppa, reboot=args.reboot, no_gpu=args.no_gpu,
        tensorflow=args.tensorflow, roster=students, packages=listed, mem_limit=args.mem_limit,
        cpu_limit=args.cpu_limit, grafana_port=args.grafana_port, domain=args.domain or "",
        staff_group=args.staff_group, gpu_policy=args.gpu_policy, gpu_strict=args.gpu_strict,
        gpu_idle_cull=args.gpu_idle_cull,
        tljh_version=args.tljh_version, source=args.source or here or f"dlcourse=={__version__}",
        dry_run=args.dry_run, yes=args.yes, recheck=args.recheck,
    )  # fmt: skip
    return opts, errors + validate(opts)


def read_course_packages(path: str, option: str) -> tuple[CoursePackages | None, list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{option}: {exc.strerror}: {path}"]
    except UnicodeDecodeError:
        return None, [f"{option} {path}: not UTF-8 text"]
    return course_packages.parse(text, path)


def open_log(paths: Paths):
    os.makedirs(os.path.dirname(paths.log_file), exist_ok=True)
    return open(paths.log_file, "a", encoding="utf-8")


def install(argv: list[str], *, host: Host | None = None, paths: Paths | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts, errors = options_from(args)
    if errors:
        for e in errors:
            print(f"dlcourse-install: {e}", file=sys.stderr)
        return runner.EXIT_BAD_OPTIONS
    paths = paths or Paths.from_env(args.prefix)
    log = None
    if host is None and opts.dry_run:
        # A dry run looks and prints; it writes nothing anywhere, not even a log.
        host = DryRunHost(root="/")
        print(f"dlcourse-install {__version__}: DRY RUN, nothing is changed or written")
    elif host is None:
        log = open_log(paths)
        host = RealHost(root="/", log=log)
        print(f"dlcourse-install {__version__}: full command output in {paths.log_file}")
    if not opts.domain:
        opts = replace(opts, domain=server_name(host))
    state = State.load(host, paths)
    state.argv = _absolute(argv)
    ctx = Context(host=host, paths=paths, opts=opts, state=state, facts=facts(host, paths))
    try:
        return runner.run(ctx)
    finally:
        if log is not None:
            log.close()


def server_name(host: Host) -> str:
    """The name URLs use unless --domain gives one: the fully qualified host name."""
    for argv in (["hostname", "--fqdn"], ["hostname"]):
        name = host.query(argv).stdout.strip()
        if name and " " not in name:
            return name
    return "localhost"


def facts(host: Host, paths: Paths) -> Facts:
    # The resume unit runs the installer with the Python running it now: bootstrap.py's venv.
    python = paths.installer_python if host.exists(paths.installer_python) else sys.executable
    return Facts(python=python, pytorch=user_env.pytorch(host, paths))


def render_files(argv: list[str]) -> int:
    """``dlcourse-install render``: the install's files under a folder (installer/render.py)."""
    parser = build_parser()
    parser.prog = "dlcourse-install render"
    parser.description = render.__doc__.split("\n\n")[1].replace("\n", " ")
    render.add_arguments(parser)
    args = parser.parse_args(argv)
    opts, errors = options_from(args)
    if errors:
        for e in errors:
            print(f"dlcourse-install render: {e}", file=sys.stderr)
        return runner.EXIT_BAD_OPTIONS
    return render.main(args.root, args.relocate, args.port, opts, Paths.from_env(args.prefix))


def _absolute(argv: list[str]) -> list[str]:
    """The resume unit runs from /: keep file arguments valid there."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--roster", "--packages", "--source") and os.path.exists(out[i + 1]):
            out[i + 1] = os.path.abspath(out[i + 1])
    return out


def status(host: Host, paths: Paths) -> int:
    state = State.load(host, paths)
    print(f"dlcourse-install {__version__}; state in {paths.state_file}")
    for number, step in enumerate(STEPS, start=1):
        entry = state.done.get(step.name)
        mark = f"done {entry['at']}" if entry else ("checked every run" if step.always else "to do")
        label = f"[{number}/{len(STEPS)}]"
        print(f"  {label:<7} {step.title:<38} {mark}")
    if state.reboot_pending:
        print("  A reboot is pending for the NVIDIA driver; run the installer again after it.")
    for line in packages_status(host, paths):
        print(line)
    return 0


def packages_status(host: Host, paths: Paths) -> list[str]:
    """The kept course packages list against what the users' environment has."""
    text = host.read_text(paths.course_packages)
    if text is None:
        return []
    listed, errors = course_packages.parse(text, paths.course_packages)
    lines = [f"Course packages ({paths.course_packages}):"]
    lines += [f"  error: {e}" for e in errors]
    rows = user_env.installed(host, paths, list(listed.packages))
    if rows is None:
        return [*lines, f"  (the users' environment {paths.user_env} does not answer)"]
    width = max((len(p.spec) for p in listed.packages), default=0)
    for package, row in zip(listed.packages, rows, strict=True):
        if row["version"] is None:
            found = "not installed"
        elif row["satisfied"] is False:
            found = f"{row['version']} (not what the list asks for)"
        else:
            found = row["version"]
        lines.append(f"  {package.kind:<5} {package.spec:<{width}}  {found}")
    pins = user_env.pytorch(host, paths)
    if pins:
        lines.append(f"  PyTorch kept at {', '.join(pins)} ({paths.pytorch_constraints})")
    return lines


def packages(argv: list[str], *, host: Host | None = None, paths: Paths | None = None) -> int:
    """``dlcourse-install packages FILE``: the course packages step alone, during the term."""
    p = argparse.ArgumentParser(
        prog="dlcourse-install packages",
        description="Install the course packages of FILE for every student (pip requirements, "
        "then an optional 'conda:' section of conda-forge packages), check that each imports "
        "as a student, and keep FILE as /etc/dlcourse/course-packages. PyTorch stays as the "
        "installer chose it. Run it outside class hours: running kernels keep the old "
        "libraries until they restart.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="show what it would do; change nothing")
    args = p.parse_args(argv)
    listed, errors = read_course_packages(args.file, "packages")
    for e in errors:
        print(f"dlcourse-install packages: {e}", file=sys.stderr)
    if errors:
        return runner.EXIT_BAD_OPTIONS
    paths = paths or Paths.from_env()
    log = None
    if host is None and args.dry_run:
        host = DryRunHost(root="/")
    elif host is None:
        if os.geteuid() != 0:
            print("dlcourse-install packages: run it as root (sudo)", file=sys.stderr)
            return runner.EXIT_BAD_OPTIONS
        log = open_log(paths)
        host = RealHost(root="/", log=log)
    # recheck: the lecturer asked for this list now, so its checks run even if unchanged.
    opts = Options(packages=listed, dry_run=args.dry_run, recheck=True)
    ctx = Context(host=host, paths=paths, opts=opts, state=State.load(host, paths),
                  facts=facts(host, paths))  # fmt: skip
    try:
        return runner.run(ctx, [COURSE_PACKAGES_STEP], closing=packages_summary)
    finally:
        if log is not None:
            log.close()


def resume(host: Host, paths: Paths) -> int:
    state = State.load(host, paths)
    if not state.argv:
        print("dlcourse-install: nothing to resume (no earlier run recorded)", file=sys.stderr)
        return runner.EXIT_FAILED
    argv = [a for a in state.argv if a not in ("--dry-run",)]
    return install([*argv, "--yes"] if "--yes" not in argv else argv, host=host, paths=paths)


def driver(argv: list[str], host: Host, paths: Paths) -> int:
    p = argparse.ArgumentParser(prog="dlcourse-install driver")
    p.add_argument(
        "--purge",
        action="store_true",
        required=True,
        help="remove the NVIDIA driver and go back to nouveau",
    )
    p.parse_args(argv)
    state = State.load(host, paths)
    ctx = Context(host=host, paths=paths, opts=Options(), state=state)
    purge_driver(ctx)
    state.save(host, paths)
    print(
        "The NVIDIA driver is purged and nouveau is no longer blacklisted: reboot to load nouveau."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "install"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    if command == "install":
        return install(rest)
    if command == "render":
        return render_files(rest)
    if command == "packages":
        return packages(rest)
    if command == "report":
        return report.main(rest)
    paths = Paths.from_env()
    if command == "status":
        return status(RealHost(), paths)
    with open_log(paths) as log:
        host = RealHost(log=log)
        return resume(host, paths) if command == "resume" else driver(rest, host, paths)

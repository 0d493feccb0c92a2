"""``dlcourse-install``: install, ``status``, ``resume``, ``driver --purge`` and ``report``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dlcourse_installer import __version__, report
from dlcourse_installer.checklist import STEPS, runner
from dlcourse_installer.checklist.course_packages import STEP as COURSE_PACKAGES_STEP
from dlcourse_installer.checklist.monitoring import NODE_EXPORTER_PACKAGE
from dlcourse_installer.checklist.nvidia_driver import purge_driver
from dlcourse_installer.checklist.state import State
from dlcourse_installer.checklist.step import Context
from dlcourse_installer.checklist.summary import packages_summary
from dlcourse_installer.inputs import course_packages, options, source
from dlcourse_installer.inputs.options import FileErrors, Options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.machine import apt, user_env
from dlcourse_installer.machine.host import DryRunHost, Host, RealHost
from dlcourse_installer.rendered import render
from dlcourse_installer.rendered.generated import Facts

COMMANDS = ("install", "render", "status", "resume", "driver", "packages", "report")


def checkout() -> str:
    """The source checkout this installer runs from, or '' when installed from a wheel."""
    here = Path(__file__).resolve().parent.parent
    return str(here) if (here / "pyproject.toml").exists() and (here / "installer").is_dir() else ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlcourse-install",
        description="Turn a fresh Ubuntu GPU server into the dlcourse platform: NVIDIA driver, "
        "The Littlest JupyterHub, PyTorch with CUDA for all users, the exporter, Prometheus, "
        "Alertmanager and Grafana. Safe to rerun: a rerun runs the steps whose options, files "
        'or installed releases changed (docs/installer.md, "Reruns").',
        epilog="Other commands: `dlcourse-install packages FILE` (course packages during the "
        "term), `dlcourse-install status`, `dlcourse-install resume`, "
        "`dlcourse-install driver --purge`, `dlcourse-install render --root DIR [options]`, "
        "`dlcourse-install report --since DATE [--csv]` (the term per student).",
    )
    p.add_argument("--version", action="version", version=f"dlcourse-install {__version__}")
    options.add_arguments(p)
    return p


def options_from(args: argparse.Namespace) -> tuple[Options, list[str]]:
    values, errors = options.read(args)
    if "source" not in values:  # the checkout this runs from, else this release from PyPI
        default = checkout() or f"dlcourse=={__version__}"
        try:
            values["source"] = source.read_source(default)
        except ValueError as exc:
            errors.append(f"--source {default!r} (the default): {exc}")
    opts = Options(**values)
    return opts, errors + options.validate(opts)


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
    paths = paths or Paths.from_env(opts.prefix)
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
        opts = opts.replace(domain=server_name(host))
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
    return Facts(
        python=python,
        pytorch=user_env.pytorch(host, paths),
        node_exporter=apt.version(host, NODE_EXPORTER_PACKAGE) or "",
    )


def render_files(argv: list[str]) -> int:
    """``dlcourse-install render``: the install's files under a folder
    (installer/rendered/render.py)."""
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
    return render.main(args.root, args.relocate, args.port, opts, Paths.from_env(opts.prefix))


def _absolute(argv: list[str]) -> list[str]:
    """The resume unit runs from /: keep file arguments valid there."""
    out = list(argv)
    paths = {option.flag for option in options.OPTIONS if option.path}
    for i, arg in enumerate(out[:-1]):
        if arg in paths and os.path.exists(out[i + 1]):
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
    try:
        listed = options.read_course_packages(args.file, "packages")
    except FileErrors as exc:
        for e in exc.errors:
            print(f"dlcourse-install packages: {e}", file=sys.stderr)
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

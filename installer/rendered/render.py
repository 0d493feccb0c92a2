"""``dlcourse-install render --root DIR [install options] [--relocate] [--port NAME=PORT]``

Writes every file the installer would write on a fresh Ubuntu 24.04 GPU server, with the
same options, under DIR (/etc/x lands at DIR/etc/x), with its mode; secrets are fresh random
values. DIR/OWNERS lists ``/absolute/path owner:group 0644`` per file, since render runs
without root and cannot chown. It runs no command and reads nothing of this machine but the
packaged assets. ``--relocate`` makes the paths inside the files point under DIR too, and
``--port`` moves a service to another port, so tests run the real daemons from DIR.
"""

from __future__ import annotations

import argparse
import os
import sys

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports, parse_override
from dlcourse_installer.machine import files
from dlcourse_installer.rendered import generated
from dlcourse_installer.rendered.generated import Facts
from dlcourse_installer.rendered.generated_file import GeneratedFile
from dlcourse_installer.rendered.rooted import RootedTree, SymlinkRefused

EXIT_OK, EXIT_BAD_OPTIONS = 0, 2
# The fixed server model: its name when --domain is not given, and the PyTorch its 580 driver
# and Ampere GPU get (cu132, installer/catalogs/pytorch.py; torch 2.14.1, on PyPI, with a
# torchvision of its series: a model, which the pins name).
MODEL_DOMAIN = "gpu-server.example.edu"
MODEL_PYTORCH = ("torch==2.14.1+cu132", "torchvision==0.29.2+cu132")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, metavar="DIR", help="write the files under DIR")
    p.add_argument(
        "--relocate",
        action="store_true",
        help="paths inside the files point under DIR too (to run the daemons from DIR)",
    )
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help=f"listen on another port ({', '.join(Ports.names())}); repeatable",
    )


def ports_from(overrides: list[str]) -> tuple[Ports, list[str]]:
    chosen, errors = {}, []
    for text in overrides:
        try:
            name, port = parse_override(text)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        chosen[name] = port
    return Ports().with_overrides(chosen), errors


def render(root: str, plan: list[GeneratedFile], *, relocated: bool) -> list[str]:
    """Write the plan under root, through no symlink (rooted.py); return the OWNERS lines."""
    owners = []
    tree = RootedTree(root)
    under = len(root) if relocated else 0  # a derived file names its sources as the plan does
    try:
        for f in plan:
            server_path = f.path[len(root) :] if relocated else f.path
            if relocated and not f.path.startswith(root + "/"):
                raise ValueError(f"{f.path} is not under {root}: its path must come from Paths")
            if f.derived is not None:  # from secrets written above: the plan lists them first
                content = f.derived(lambda path: tree.read(path[under:]).strip(), None)
            else:
                content = files.new_secret() if f.is_secret else f.content
            tree.write(server_path, content, f.mode)
            owners.append(f"{server_path} {f.owner}:{f.group} {f.mode:04o}")
        owners.sort()
        tree.write("/OWNERS", "\n".join(owners) + "\n", 0o644)
    finally:
        tree.close()
    return owners


def main(root: str, relocate: bool, port_overrides: list[str], opts, paths: Paths) -> int:
    ports, errors = ports_from(port_overrides)
    if errors:
        for e in errors:
            print(f"dlcourse-install render: {e}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    root = os.path.abspath(root)
    opts = opts.replace(domain=opts.domain or MODEL_DOMAIN)
    inside = paths.under(root) if relocate else paths
    # The fixed server model: the installer's own venv made by bootstrap.py resumes it.
    facts = Facts(python=inside.installer_python, pytorch=MODEL_PYTORCH)
    plan = generated.plan(inside, ports, opts, facts)
    try:
        owners = render(root, plan, relocated=relocate)
    except SymlinkRefused as exc:
        print(f"dlcourse-install render: {exc}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    print(f"dlcourse-install render: {len(owners)} files under {root}; owners in {root}/OWNERS")
    return EXIT_OK

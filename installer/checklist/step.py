"""What every step is made of: its declaration (``Step``), what it works with (``Context``),
how it stops (``StepError``), and the writing of its part of the generated files.

A step declares what it depends on: the options it reads (it sees no other: ``ctx.opts``),
the parts of the generated files it writes, and the releases it installed. It is done while
all of them are as they were when it last ran (``Step.inputs``, runner.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from dlcourse_installer.catalogs import driver, pytorch
from dlcourse_installer.checklist.state import State
from dlcourse_installer.inputs.options import Options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.machine import files, tljh, users
from dlcourse_installer.machine.host import Host
from dlcourse_installer.rendered import generated
from dlcourse_installer.rendered.generated import Facts
from dlcourse_installer.rendered.generated_file import GeneratedFile


class StepError(Exception):
    """The step cannot go on; the message says what to do."""


class RebootRequired(Exception):
    """The driver is installed; the kernel must boot with it before the install goes on."""


@dataclass
class Findings:
    """What the preflight found on this machine (preflight.check)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    distro: str = ""
    gpus: list[str] = field(default_factory=list)  # PCI addresses
    nvswitches: list[str] = field(default_factory=list)
    secure_boot: bool | None = None


@dataclass
class Context:
    host: Host
    paths: Paths
    # What the running step may read: the runner narrows it to the step's reads
    # (Options.only); between steps, and for the files, every option of the run (options).
    opts: Options
    state: State
    facts: Facts = field(default_factory=lambda: Facts(python=sys.executable))
    ports: Ports = field(default_factory=Ports)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    findings: Findings | None = None
    driver_branch: driver.Branch | None = None  # chosen by the driver step
    pytorch_build: pytorch.CudaBuild | None = None  # chosen by the users' environment step
    options: Options = field(init=False)

    def __post_init__(self) -> None:
        self.options = self.opts

    def note(self, text: str) -> None:
        self.out.write(f"      {text}\n")

    @cached_property
    def files(self) -> list[GeneratedFile]:
        """Every file this install writes (generated.plan, the one registry)."""
        return generated.plan(self.paths, self.ports, self.options, self.facts)

    def learned(self, facts: Facts) -> None:
        """What the install found out (PyTorch's exact build): the files follow it."""
        self.facts = facts
        self.__dict__.pop("files", None)


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    ensure: Callable[[Context], None]
    # The options it reads (options.OPTIONS names), the only ones it sees: when one of them
    # changes, a finished step runs again.
    reads: tuple[str, ...] = ()
    always: bool = False  # looks only; runs every time
    # The parts of generated.plan() it writes: when their contents change (another option,
    # a new dlcourse, new rules or dashboards), a finished step runs again too.
    parts: tuple[str, ...] = ()
    # The releases it installed, as the machine has them now: when one changed (by hand,
    # by another tool), a finished step runs again.
    installed: Callable[[Context], dict] = lambda ctx: {}

    def inputs(self, ctx: Context) -> dict:
        """What the step's "done" stands for: when any of it changes, it runs again."""
        return {
            "options": ctx.options.values(self.reads),
            "files": generated.digest(ctx.files, self.parts),
            "installed": self.installed(ctx),
        }


def ensure_part(ctx: Context, part: str) -> bool:
    """Write this part of the registry's files where they differ. True if any changed."""
    changed = False
    for f in generated.part(ctx.files, part):
        changed |= ensure_generated(ctx.host, f, planning=ctx.opts.dry_run)
    return changed


def ensure_generated(host: Host, f: GeneratedFile, *, planning: bool = False) -> bool:
    """One entry of the registry in place. True if anything changed.

    A file for a service account that does not exist yet (its package comes in a later
    step) is written root-only for now; that step hands it over (``ensure_owner``). A dry
    run (``planning``) shows the final owner.
    """
    owner, group, mode = f.owner, f.group, f.mode
    accounts = _account_exists(host, "passwd", owner) and _account_exists(host, "group", group)
    if not (accounts or planning):
        owner, group, mode = "root", "root", mode & 0o700
    if f.is_secret:
        return files.ensure_secret(host, f.path, mode=mode, owner=owner, group=group)
    if f.derived is not None:
        current = host.read_text(f.path)
        if planning:  # shown, not made: it holds secrets, and a dry run runs on the stdlib
            content = current or ""
        else:
            content = f.derived(lambda path: (host.read_text(path) or "").strip(), current)
        return files.ensure_file(
            host, f.path, content, mode=mode, owner=owner, group=group, secret=True
        )
    return files.ensure_file(host, f.path, f.content, mode=mode, owner=owner, group=group,
                             origin=f.origin)  # fmt: skip


def ensure_owner(host: Host, f: GeneratedFile) -> bool:
    """The owner and mode of the registry, for a file written before its account existed."""
    if not host.is_regular_file(f.path):
        return False
    return files.ensure_attrs(host, f.path, mode=f.mode, owner=f.owner, group=f.group)


def _account_exists(host: Host, database: str, name: str) -> bool:
    if name == "root":
        return True
    return users.user_exists(host, name) if database == "passwd" else users.group_exists(host, name)


def restart_hub(ctx: Context) -> None:
    """Restart the hub for new configuration and wait for its API, two minutes at most.

    Not `tljh-config reload hub`: it polls until the hub answers, forever if it never does
    (tljh/config.py reload_component, TLJH 2.0.0).
    """
    if not tljh.restart_hub(ctx.host, ctx.ports, wait=not ctx.opts.dry_run):
        raise StepError(
            "the hub did not come back within two minutes after a restart: "
            "see `journalctl -u jupyterhub -n 50`"
        )


def bullets(items: list[str]) -> str:
    return "\n".join(f"  - {i}" for i in items)

"""The kernel tracker over a /proc fixture tree: kernels that start while /proc is walked.

Both races were found under load (issue 14): a process seen between fork and exec shows
its parent's argv, and a kernel whose exec event arrives during a walk is behind it.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from dlcourse_exporter.sources import proctable
from dlcourse_exporter.sources.kernels import KernelTracker
from dlcourse_exporter.sources.owners import Owners
from dlcourse_exporter.sources.procfs import CLOCK_TICKS
from dlcourse_exporter.sources.proctable import MAY_STILL_EXEC_SECONDS, ProcessTableSource
from dlcourse_testing import procfs as fixture

UPTIME = 1000.0
DRIVER_ARGV = ["python", "-c", "from jupyter_client import KernelManager ..."]
KERNEL_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "/home/ada/kernel-1234.json"]
ME = os.getuid()


def write_process(procfs: Path, pid: int, started: float, argv: list[str]) -> None:
    """pid, started `started` seconds after boot, claiming hub user ada, running argv."""
    fixture.write_process(
        procfs,
        pid,
        environ=b"JUPYTERHUB_USER=ada\0",
        argv=argv,
        cgroup="0::/user.slice\n",
        start_ticks=int(started * CLOCK_TICKS),
    )


class Machine:
    """The table and the tracker over one fixture tree; this account stands for ada's
    spawner, so her JUPYTERHUB_USER counts."""

    def __init__(self, procfs: Path) -> None:
        fixture.write_uptime(procfs, UPTIME)
        owners = Owners(spawner_account=pwd.getpwuid(ME).pw_name)
        self.table = ProcessTableSource(owners, procfs)
        self.tracker = KernelTracker(owners, procfs, exit_events="poll")

    def scan(self) -> dict[str, int]:
        self.tracker.scan(self.table.poll())
        return dict(self.tracker.snapshot().running)


def test_a_young_process_seen_before_its_exec_is_counted_after(tmp_path: Path):
    machine = Machine(tmp_path)
    # jupyter_client has forked: the child still shows the parent's argv.
    write_process(tmp_path, 4242, UPTIME - 1, DRIVER_ARGV)
    assert machine.scan() == {}
    write_process(tmp_path, 4242, UPTIME - 1, KERNEL_ARGV)  # the exec: same pid, start, name
    assert machine.scan() == {"ada": 1}


def test_an_old_process_that_is_no_kernel_is_remembered(tmp_path: Path):
    machine = Machine(tmp_path)
    write_process(tmp_path, 4242, UPTIME - MAY_STILL_EXEC_SECONDS - 1, DRIVER_ARGV)
    assert machine.scan() == {}
    (tmp_path / "4242" / "cmdline").unlink()  # not read again: the verdict was kept
    assert machine.scan() == {}


def test_a_kernel_exec_d_during_a_walk_of_proc_is_not_taken_for_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    machine = Machine(tmp_path)
    machine.tracker.mode = "netlink"  # as if the proc connector were listening (it needs root)
    write_process(tmp_path, 10, UPTIME - 100, DRIVER_ARGV)
    real_listdir = os.listdir

    def walk_with_a_late_exec(path):
        names = real_listdir(path)  # the walk has passed where the kernel will be
        write_process(tmp_path, 4242, UPTIME - 1, KERNEL_ARGV)
        machine.tracker._on_exec(4242)  # its exec event arrives while the walk runs
        return names

    monkeypatch.setattr(proctable.os, "listdir", walk_with_a_late_exec)
    table = machine.table.poll()
    monkeypatch.setattr(proctable.os, "listdir", real_listdir)
    machine.tracker.scan(table)
    assert machine.tracker.snapshot().running == {"ada": 1}
    assert machine.scan() == {"ada": 1}
    assert machine.tracker.snapshot().unknown_exits == {}

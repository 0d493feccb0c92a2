"""KernelWatcher.scan over a /proc fixture tree: kernels that start while a scan runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dlcourse_exporter.sources.kernels import MAY_STILL_EXEC_SECONDS, KernelWatcher
from dlcourse_exporter.sources.owners import OwnerResolver
from dlcourse_exporter.sources.procfs import CLOCK_TICKS

UPTIME = 1000.0
DRIVER_ARGV = ["python", "-c", "from jupyter_client import KernelManager ..."]
KERNEL_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "/home/ada/kernel-1234.json"]


def write_process(procfs: Path, pid: int, started: float, argv: list[str]) -> None:
    """pid, started `started` seconds after boot, owned by hub user ada, running argv."""
    d = procfs / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    start_ticks = int(started * CLOCK_TICKS)
    fields = ["S", "1", str(pid), "0", "0", "-1", "0"] + ["0"] * 12 + [str(start_ticks), "0", "0"]
    (d / "stat").write_text(f"{pid} (python) {' '.join(fields)}\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "cgroup").write_text("0::/system.slice/jupyter-ada.service\n")  # TLJH's unit


def scan(watcher: KernelWatcher) -> dict[str, int]:
    watcher.scan()
    return watcher.snapshot().running


def test_a_young_process_seen_before_its_exec_is_counted_after(tmp_path: Path):
    (tmp_path / "uptime").write_text(f"{UPTIME:.2f} 0.00\n")
    watcher = KernelWatcher(OwnerResolver(tmp_path), tmp_path, exit_events="poll")
    # jupyter_client has forked: the child still shows the parent's argv.
    write_process(tmp_path, 4242, UPTIME - 1, DRIVER_ARGV)
    assert scan(watcher) == {}
    write_process(tmp_path, 4242, UPTIME - 1, KERNEL_ARGV)  # the exec: same pid, same start
    assert scan(watcher) == {"ada": 1}


def test_an_old_process_that_is_no_kernel_is_remembered(tmp_path: Path):
    (tmp_path / "uptime").write_text(f"{UPTIME:.2f} 0.00\n")
    watcher = KernelWatcher(OwnerResolver(tmp_path), tmp_path, exit_events="poll")
    write_process(tmp_path, 4242, UPTIME - MAY_STILL_EXEC_SECONDS - 1, DRIVER_ARGV)
    assert scan(watcher) == {}
    (tmp_path / "4242" / "cmdline").unlink()  # not read again: the verdict was kept
    assert scan(watcher) == {}


def test_a_kernel_exec_d_during_a_walk_of_proc_is_not_taken_for_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "uptime").write_text(f"{UPTIME:.2f} 0.00\n")
    watcher = KernelWatcher(OwnerResolver(tmp_path), tmp_path, exit_events="poll")
    watcher.mode = "netlink"  # as if the proc connector were listening (it needs root)
    write_process(tmp_path, 10, UPTIME - 100, DRIVER_ARGV)
    real_scandir = os.scandir

    def walk_with_a_late_exec(path):
        entries = list(real_scandir(path))  # the walk has passed where the kernel will be
        write_process(tmp_path, 4242, UPTIME - 1, KERNEL_ARGV)
        watcher._on_exec(4242)  # its exec event arrives while the walk runs
        return iter(entries)

    monkeypatch.setattr(os, "scandir", walk_with_a_late_exec)
    watcher.scan()
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert watcher.snapshot().running == {"ada": 1}
    assert scan(watcher) == {"ada": 1}
    assert watcher.snapshot().unknown_exits == {}

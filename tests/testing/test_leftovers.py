"""dlcourse_testing.leftovers on real accounts and real processes whose owners really die.

Each owner is a child Python that marks an account or writes a ledger, then either waits
(a run still alive) or exits (a run that died without cleaning up).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlcourse_testing.alerting import wait_until
from dlcourse_testing.leftovers import (
    Ledger,
    Owner,
    StillRunning,
    die_with_parent,
    reap_accounts,
    remove_account,
    start_ticks,
    stop_left_running,
    stop_processes,
)

IS_ROOT = os.geteuid() == 0
NOT_ROOT_REASON = "needs root: real accounts (useradd)"


class OwnerProcess:
    """A child Python running `code` (dlcourse_testing is installed); it waits for a line on
    stdin once the code has run, then exits."""

    def __init__(self, code: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", f"{code}\nprint('done', flush=True)\ninput()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = []
        while (line := self.popen.stdout.readline()) not in ("done\n", ""):
            lines.append(line.strip())
        assert line, f"owner process failed: {lines}"
        self.output = lines

    def exit(self) -> None:
        self.popen.stdin.write("\n")
        self.popen.stdin.close()
        self.popen.wait(timeout=30)  # not for EOF: its children may hold its stdout


@pytest.fixture
def owners() -> Iterator[list[OwnerProcess]]:
    started: list[OwnerProcess] = []
    yield started
    for owner in started:
        if owner.popen.poll() is None:
            owner.exit()


@pytest.fixture
def strays() -> Iterator[list[tuple[int, int | None]]]:
    """(pid, start time) of processes a test leaves behind should it fail; stopped after."""
    processes: list[tuple[int, int | None]] = []
    yield processes
    stop_processes([(pid, start) for pid, start in processes if start is not None], 10)


@pytest.fixture
def account_names() -> Iterator[list[str]]:
    """Random names; whatever of them exists afterwards is removed."""
    names = [f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    yield names
    if IS_ROOT:
        for name in names:
            remove_account(name)


def wait_gone(pid: int, start: int | None, timeout: float = 30) -> None:
    wait_until(lambda: start_ticks(pid) != start, timeout, f"pid {pid} to end")


@pytest.mark.live
def test_an_owner_is_alive_only_as_the_same_process_of_the_same_boot():
    me = Owner.current()
    assert me.alive()
    assert Owner.from_mark(f"Ada Lovelace,,,{me.mark()}") == me
    assert Owner.from_mark("Ada Lovelace,,,") is None
    assert not Owner(me.pid, me.start + 1, me.boot).alive()  # the pid, reused later
    assert not Owner(me.pid, me.start, "0" * 8 + me.boot[8:]).alive()  # before a reboot
    ended = subprocess.Popen(["sleep", "600"])
    owner = Owner(ended.pid, start_ticks(ended.pid), me.boot)
    assert owner.alive()
    ended.kill()
    ended.wait()
    assert not owner.alive()


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason=NOT_ROOT_REASON)
def test_reap_removes_only_accounts_of_dead_owners(owners, account_names, strays):
    alive_owners, dead_owners, unmarked = account_names
    create = "from dlcourse_testing.leftovers import create_account; create_account({!r})"
    owners.append(OwnerProcess(create.format(alive_owners)))
    dead = OwnerProcess(create.format(dead_owners))
    owners.append(dead)
    subprocess.run(["useradd", "--create-home", unmarked], check=True, capture_output=True)
    # The dead owner's account still runs something and has files.
    entry = pwd.getpwnam(dead_owners)
    Path(entry.pw_dir, "notebook.ipynb").write_text("{}")
    sleeper = subprocess.Popen(["sleep", "600"], user=dead_owners, start_new_session=True)
    strays.append((sleeper.pid, start_ticks(sleeper.pid)))
    dead.exit()

    reaped = reap_accounts()

    assert dead_owners in reaped
    with pytest.raises(KeyError):
        pwd.getpwnam(dead_owners)
    assert sleeper.wait(timeout=30) == -signal.SIGKILL
    assert not Path(entry.pw_dir).exists()
    assert pwd.getpwnam(alive_owners)  # its owner still runs
    assert pwd.getpwnam(unmarked)  # not ours


@pytest.mark.live
def test_ledger_of_a_dead_run_stops_what_it_left(owners, tmp_path, strays):
    ledger = tmp_path / "processes"
    code = f"""
import subprocess
from pathlib import Path
from dlcourse_testing.leftovers import Ledger
ledger = Ledger(Path({str(ledger)!r}))
left = subprocess.Popen(["sleep", "600"], start_new_session=True)
ledger.record(left.pid, "sleeper")
print(left.pid)
"""
    run = OwnerProcess(code)
    owners.append(run)
    left = int(run.output[0])
    left_start = start_ticks(left)
    strays.append((left, left_start))
    with pytest.raises(StillRunning):
        stop_left_running(ledger)  # its run is alive: nothing of it is touched
    assert start_ticks(left) == left_start

    # A process that now holds a recorded pid is not the recorded one: left alone.
    bystander = subprocess.Popen(["sleep", "600"])
    strays.append((bystander.pid, start_ticks(bystander.pid)))
    with ledger.open("a") as file:
        file.write(f"{bystander.pid} {start_ticks(bystander.pid) + 1} an older process\n")
    run.exit()

    assert stop_left_running(ledger) == ["sleeper"]
    wait_gone(left, left_start)
    assert bystander.poll() is None


def test_ledger_written_by_this_run_is_refused(tmp_path):
    Ledger(tmp_path / "processes")
    with pytest.raises(StillRunning) as refused:
        stop_left_running(tmp_path / "processes")
    assert refused.value.owner.pid == os.getpid()
    assert stop_left_running(tmp_path / "missing") == []


@pytest.mark.live
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_a_child_dies_with_its_parent(owners, strays):
    code = f"""
import subprocess
from dlcourse_testing.leftovers import die_with_parent
child = subprocess.Popen({die_with_parent(["sleep", "600"])!r})
print(child.pid)
"""
    parent = OwnerProcess(code)
    child = int(parent.output[0])
    child_start = start_ticks(child)
    strays.append((child, child_start))
    # setpriv has set the signal once it has made itself `sleep`.
    cmdline = Path(f"/proc/{child}/cmdline")
    wait_until(lambda: cmdline.read_bytes().startswith(b"sleep\0"), 30, "setpriv to exec")
    parent.popen.kill()  # no clean-up of its own
    parent.popen.wait()
    wait_gone(child, child_start)
